//! Flow-log events: what the writers consume, one per flow-log tuple.
//!
//! The flow table produces [`FlowRecord`]s (`Begin`, `Report`, `End`); the
//! caller, who knows the NIC, its NSGs and the verdict stored on the flow,
//! turns each into a [`FlowLogEvent`] per NSG / flow log with
//! [`FlowLogEvent::from_record`] and hands it to a writer with the rule name.

use netwatch_rules::{Access, Direction, RuleKind, SecurityRule};

use crate::table::{EndReason, FlowRecord, FlowRecordKind, FlowTuple};
use crate::tuple::TupleCounters;

/// Flow-log state of an event (spec §7.1 `B`/`C`/`E`; spec §7.3 adds `D`
/// for denied flows, which the writers derive from `access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowLogState {
    Begin,
    Continuing,
    End,
}

/// One tuple-to-be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowLogEvent {
    /// When the event was logged: decides the record (minute) and the hour
    /// file. May go back (overlapping captures): a minute already written
    /// gets the event's tuple merged into its record.
    pub logged_ns: i64,
    /// The tuple's own time stamp: first packet (`B`), report boundary
    /// (`C`), last packet (`E`; the end itself when no packet came since
    /// the flow's last `C`).
    pub time_ns: i64,
    /// Initiator → responder.
    pub tuple: FlowTuple,
    /// As seen from the NIC: inbound when the initiator is remote.
    pub direction: Direction,
    pub access: Access,
    pub state: FlowLogState,
    /// Deltas since the flow's previous tuple; zero for `Begin`.
    pub counters: TupleCounters,
}

impl FlowLogEvent {
    /// The event for a flow-table record. `direction` and `access` come
    /// from the caller's NSG evaluation of the flow's first packet.
    pub fn from_record<T>(rec: &FlowRecord<T>, direction: Direction, access: Access) -> Self {
        let (state, time_ns) = match rec.kind {
            FlowRecordKind::Begin => (FlowLogState::Begin, rec.first_ns),
            FlowRecordKind::Report => (FlowLogState::Continuing, rec.at_ns),
            // The active timeout cuts a record, not the flow: in a flow log
            // the flow continues.
            FlowRecordKind::End(EndReason::ActiveTimeout) => (FlowLogState::Continuing, rec.at_ns),
            // The last packet, unless none came since the flow's previous
            // tuple (a `C` at a report or an active-timeout cut, after that
            // packet): then the end's own time, so that `E` never comes
            // before the `C` it follows.
            FlowRecordKind::End(_) if rec.interval_forward.packets + rec.interval_reverse.packets == 0 => (FlowLogState::End, rec.at_ns),
            FlowRecordKind::End(_) => (FlowLogState::End, rec.last_ns),
        };
        let counters = match rec.kind {
            FlowRecordKind::Begin => TupleCounters::default(),
            _ => TupleCounters {
                packets_src_to_dst: rec.interval_forward.packets,
                bytes_src_to_dst: rec.interval_forward.bytes,
                packets_dst_to_src: rec.interval_reverse.packets,
                bytes_dst_to_src: rec.interval_reverse.bytes,
            },
        };
        FlowLogEvent {
            logged_ns: rec.at_ns,
            time_ns,
            tuple: rec.tuple,
            direction,
            access,
            state,
            counters,
        }
    }
}

/// Rule name as VNet flow logs write it: `DefaultRule_<name>` for default
/// rules, the plain name for custom rules (spec §7.3, §13.1).
pub fn vnet_rule_name(kind: RuleKind, name: &str) -> String {
    match kind {
        RuleKind::Default => format!("DefaultRule_{name}"),
        RuleKind::User => name.to_string(),
    }
}

/// [`vnet_rule_name`] of a configured rule.
pub fn vnet_rule_name_of(rule: &SecurityRule) -> String {
    vnet_rule_name(rule.kind, &rule.name)
}
