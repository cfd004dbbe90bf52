//! netwatch-flowlogs: flow table, flow states, NSG and VNet flow log
//! writers and a flow log reader (spec §7).
//!
//! The pipeline the root `evaluate` command runs, per packet:
//!
//! 1. decode the packet into a [`PacketInfo`];
//! 2. [`FlowTable::observe`] it; on a flow's first packet the `init` closure
//!    evaluates the NSG chain and returns the verdict, which the table keeps
//!    in the flow's user slot (NSGs are stateful: return traffic is not
//!    re-evaluated, spec §13.3);
//! 3. [`FlowTable::drain_records`] yields `Begin`, `Report` (every 5 minutes
//!    of flow time) and `End` records; each becomes a [`FlowLogEvent`]
//!    ([`FlowLogEvent::from_record`]) that a writer turns into a `B`, `C`
//!    or `E` tuple ([`NsgFlowLogWriter`], spec §7.1; [`VnetFlowLogWriter`],
//!    spec §7.3);
//! 4. at the end, [`FlowTable::finish`], drain again, and flush the writers.
//!
//! [`read`] parses NSG v1/v2 and VNet v4 files back.
#![forbid(unsafe_code)]

pub mod error;
pub mod event;
pub mod ids;
pub mod ipfix;
pub mod nsg;
pub mod read;
mod store;
pub mod table;
pub mod text;
pub mod time;
pub mod tuple;
pub mod vnet;

pub use error::{FlowLogError, ReadError};
pub use event::{vnet_rule_name, vnet_rule_name_of, FlowLogEvent, FlowLogState};
pub use ids::{derived_guid, IdError, MacAddress};
pub use ipfix::{ExportClock, ExportOptions, ExportProtocol, ExportStats, FlowExporter, NsgDecision};
pub use nsg::{NsgFlowLogVersion, NsgFlowLogWriter, NsgLogTarget, NsgWriterStats};
pub use read::{read_file, FlowLogFile, FlowLogRecord, NsgRecord, VnetRecord};
pub use table::{
    ConfigError, Counters, DirectionStats, EndReason, FlowRecord, FlowRecordKind, FlowState, FlowTable, FlowTableConfig, FlowTuple,
    IcmpInfo, Observation, PacketInfo,
};
pub use tuple::{NsgFlowState, NsgFlowTuple, NsgProtocol, TupleCounters, TupleError, VnetFlowState, VnetFlowTuple};
pub use vnet::{VnetFlowLogWriter, VnetLogTarget, VnetWriterStats};
