//! Evaluation: a classifier finds the first matching rule of one NSG and
//! direction; the chain combines the NSGs of subnet and NIC (spec §1.3, §1.6,
//! Decisions 5).

use crate::flow::FlowKey;
use crate::model::Access;
use crate::resolve::ResolvedRule;

/// Finds the first rule (in evaluation order) that matches a flow.
pub trait Classifier {
    /// Index into the ordered rule list of the first match, if any.
    fn first_match(&self, key: &FlowKey) -> Option<usize>;
}

/// The reference evaluator: a linear scan in priority order. Obviously
/// correct, and the oracle the compiled classifier is tested against.
#[derive(Clone, Debug)]
pub struct LinearClassifier {
    rules: Vec<ResolvedRule>,
}

impl LinearClassifier {
    /// A classifier over rules already in evaluation order.
    pub fn new(rules: Vec<ResolvedRule>) -> Self {
        LinearClassifier { rules }
    }

    /// The rules.
    pub fn rules(&self) -> &[ResolvedRule] {
        &self.rules
    }
}

impl Classifier for LinearClassifier {
    #[inline]
    fn first_match(&self, key: &FlowKey) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(key))
    }
}

/// A linear scan for a flow whose source port is not given (`*` in IP flow
/// verify, spec §3): the first rule that matches it whatever its source
/// port ([`ResolvedRule::matches_any_source_port`]). The key's source port
/// is ignored.
#[derive(Clone, Copy, Debug)]
pub struct AnySourcePortClassifier<'a> {
    pub rules: &'a [ResolvedRule],
}

impl Classifier for AnySourcePortClassifier<'_> {
    fn first_match(&self, key: &FlowKey) -> Option<usize> {
        self.rules.iter().position(|r| r.matches_any_source_port(key))
    }
}

/// What one NSG of the chain decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsgVerdict {
    /// Index of the NSG in the chain.
    pub chain_index: usize,
    /// Index of the matching rule in that NSG's ordered list, if any rule
    /// matched. No match cannot happen with the default rules present; it is
    /// treated as a deny (fail closed).
    pub rule_index: Option<usize>,
    pub access: Access,
}

/// The decision over a chain of NSGs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainDecision {
    pub access: Access,
    /// The NSG and rule that decided: the first deny, or when every NSG
    /// allows, the allowing rule of the last NSG. `None` for an empty chain.
    pub decided_by: Option<NsgVerdict>,
}

/// One NSG of a chain: its ordered rules and a classifier over them.
#[derive(Clone, Copy)]
pub struct ChainLink<'a> {
    pub rules: &'a [ResolvedRule],
    pub classifier: &'a dyn Classifier,
}

/// Evaluates a chain in order (inbound: subnet then NIC; outbound: NIC then
/// subnet). The first deny ends evaluation; a chain with no NSG allows.
/// Takes any iterator of links so callers need not allocate per flow.
pub fn evaluate_chain<'a, I>(chain: I, key: &FlowKey) -> ChainDecision
where
    I: IntoIterator<Item = ChainLink<'a>>,
{
    let mut last = None;
    for (chain_index, link) in chain.into_iter().enumerate() {
        let rule_index = link.classifier.first_match(key);
        let access = rule_index.and_then(|i| link.rules.get(i)).map_or(Access::Deny, |r| r.access);
        let v = NsgVerdict {
            chain_index,
            rule_index,
            access,
        };
        if access == Access::Deny {
            return ChainDecision {
                access,
                decided_by: Some(v),
            };
        }
        last = Some(v);
    }
    ChainDecision {
        access: Access::Allow,
        decided_by: last,
    }
}
