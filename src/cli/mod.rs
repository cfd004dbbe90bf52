//! Argument parsing (clap derive) and output formatting.

mod capture;
mod flowlog_read;
mod flows;
mod output;

use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use netwatch::watcher::{self, IpFlowProtocol, IpFlowVerifyParameters};
use netwatch::Environment;
use netwatch_rules::Direction;

use output::{print_value, OutputFormat};

/// An offline Azure Network Watcher: NSG evaluation, routing, packet capture
/// and flow logs over your real Azure resources.
#[derive(Parser, Debug)]
#[command(name = "netwatch", version, about, propagate_version = true)]
struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Is this flow allowed to or from the VM, and by which rule? (IP flow verify)
    IpFlowVerify(IpFlowVerifyArgs),
    /// The security group view of a VM: NSG rules per NIC, default and effective rules.
    SecurityGroupView(SecurityGroupViewArgs),
    /// The effective security rules of a NIC, tags expanded, one entry per NSG.
    EffectiveSecurityRules(EffectiveSecurityRulesArgs),
    /// Where does a packet from the VM to that address go next? (next hop)
    NextHop(NextHopArgs),
    /// The effective routes of a NIC's subnet: system, gateway and user routes, Active or Invalid.
    EffectiveRoutes(EffectiveRoutesArgs),
    /// The topology of a resource group, VNet or subnet: resources and their associations.
    Topology(TopologyArgs),
    /// Can the VM reach that VM or address? The path hop by hop, with the NSG or route that blocks it (connection troubleshoot).
    #[command(visible_alias = "test-connectivity")]
    ConnectivityCheck(ConnectivityCheckArgs),
    /// The flows of capture files: packets and bytes each way, times, state.
    Flows(flows::FlowsArgs),
    /// Replay captures through a NIC's NSGs: the verdict and rule of every flow.
    Evaluate(flows::EvaluateArgs),
    /// Capture packets on a live interface (Network Watcher packet capture).
    Capture(Box<capture::CaptureArgs>),
    /// Flow-log files: NSG v1/v2 and VNet v4, Azure's or netwatch's.
    #[command(subcommand)]
    FlowLogs(flowlog_read::FlowLogsCommand),
}

/// Where the Azure resources come from; the same on every command.
#[derive(Args, Debug)]
pub(crate) struct ResourceArgs {
    /// Azure resource JSON: a file or a directory of .json files (az CLI or REST shape). Repeatable.
    #[arg(long = "resources", value_name = "PATH")]
    pub(crate) resources: Vec<PathBuf>,
    /// A ServiceTags_*.json download (.json or .json.gz) for service tags in rules.
    #[arg(long = "service-tags", value_name = "FILE")]
    pub(crate) service_tags: Option<PathBuf>,
}

impl ResourceArgs {
    pub(crate) fn load(&self) -> Result<Environment> {
        let mut env = Environment::load(&self.resources)?;
        if let Some(t) = &self.service_tags {
            env.load_service_tags(t)?;
        }
        tracing::info!(
            files = env.files.len(),
            nsgs = env.network_security_groups.len(),
            vnets = env.virtual_networks.len(),
            nics = env.network_interfaces.len(),
            vms = env.virtual_machines.len(),
            "loaded resources"
        );
        for (t, n) in &env.skipped {
            tracing::info!(r#type = %t, count = n, "skipped resources of a type netwatch does not use");
        }
        Ok(env)
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
struct IpFlowVerifyArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The VM, by name or resource id (this or --nic is required).
    #[arg(long, value_name = "NAME|ID", required_unless_present = "nic")]
    vm: Option<String>,
    /// The NIC, by name or resource id (needed when the VM has several and the local IP does not tell).
    #[arg(long, value_name = "NAME|ID")]
    nic: Option<String>,
    /// Inbound or Outbound, as seen from the VM.
    #[arg(long, value_parser = parse_direction)]
    direction: Direction,
    /// TCP or UDP.
    #[arg(long, value_parser = IpFlowProtocol::parse)]
    protocol: IpFlowProtocol,
    /// The VM's address and port, e.g. 10.0.0.4:22 or [2001:db8::4]:22;
    /// the port may be `*` when it is the source port (outbound).
    #[arg(long, value_name = "IP:PORT", value_parser = parse_flow_endpoint)]
    local: FlowEndpoint,
    /// The other end's address and port; the port may be `*` when it is
    /// the source port (inbound).
    #[arg(long, value_name = "IP:PORT", value_parser = parse_flow_endpoint)]
    remote: FlowEndpoint,
    /// Also print the per-NSG, per-rule trace.
    #[arg(long)]
    explain: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
struct SecurityGroupViewArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The VM, by name or resource id.
    #[arg(long, value_name = "NAME|ID")]
    vm: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
struct EffectiveSecurityRulesArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The NIC, by name or resource id.
    #[arg(long, value_name = "NAME|ID")]
    nic: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
struct NextHopArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The VM, by name or resource id (this or --nic is required).
    #[arg(long, value_name = "NAME|ID", required_unless_present = "nic")]
    vm: Option<String>,
    /// The NIC, by name or resource id (when the VM has several and the source IP does not tell).
    #[arg(long, value_name = "NAME|ID")]
    nic: Option<String>,
    /// The VM's address the packet leaves from.
    #[arg(long, value_name = "IP")]
    source: IpAddr,
    /// Where the packet goes.
    #[arg(long, value_name = "IP")]
    destination: IpAddr,
    /// Also list the routes that contain the destination and why the winner won.
    #[arg(long)]
    explain: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
#[command(group(clap::ArgGroup::new("destination").args(["dest_vm", "dest_address"]).required(true)))]
struct ConnectivityCheckArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The source VM, by name or resource id (this or --source-nic is required).
    #[arg(long, value_name = "NAME|ID", required_unless_present = "source_nic")]
    source_vm: Option<String>,
    /// The source NIC, by name or resource id (when the VM has several).
    #[arg(long, value_name = "NAME|ID")]
    source_nic: Option<String>,
    /// The destination VM, by name or resource id (its primary NIC's address).
    #[arg(long, value_name = "NAME|ID")]
    dest_vm: Option<String>,
    /// The destination address.
    #[arg(long, value_name = "IP")]
    dest_address: Option<IpAddr>,
    /// The destination port (Http and Https default to 80 and 443).
    #[arg(long, value_name = "PORT")]
    dest_port: Option<u16>,
    /// The source port [default: 49152, the first dynamic port].
    #[arg(long, value_name = "PORT")]
    source_port: Option<u16>,
    /// Tcp, Http, Https or Icmp.
    #[arg(long, value_name = "PROTOCOL", default_value = "Tcp", value_parser = watcher::connectivity::ConnectivityProtocol::parse)]
    protocol: watcher::connectivity::ConnectivityProtocol,
    /// IPv4 or IPv6: which address of --dest-vm to use [default: its primary IP configuration's].
    #[arg(long, value_name = "VERSION", value_parser = watcher::connectivity::PreferredIpVersion::parse)]
    preferred_ip_version: Option<watcher::connectivity::PreferredIpVersion>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
struct EffectiveRoutesArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The NIC, by name or resource id.
    #[arg(long, value_name = "NAME|ID")]
    nic: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
#[command(group(clap::ArgGroup::new("target").args(["resource_group", "vnet", "subnet"]).required(true).multiple(true)))]
struct TopologyArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// Every loaded resource of this resource group (targetResourceGroupName).
    #[arg(long = "resource-group", short = 'g', value_name = "NAME")]
    resource_group: Option<String>,
    /// A virtual network, by name or resource id, and what is in it (targetVirtualNetwork).
    #[arg(long, value_name = "NAME|ID")]
    vnet: Option<String>,
    /// A subnet, by resource id or VNET/SUBNET, and what is in it (targetSubnet).
    #[arg(long, value_name = "ID|VNET/SUBNET")]
    subnet: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
}

/// An IP flow verify endpoint: an address and a port, or `*` for any port.
#[derive(Clone, Copy, Debug)]
struct FlowEndpoint {
    ip: IpAddr,
    /// `None` for `*`.
    port: Option<u16>,
}

/// `IP:PORT`, `[IPv6]:PORT`, or either with `*` as the port.
fn parse_flow_endpoint(s: &str) -> Result<FlowEndpoint, String> {
    if let Some(host) = s.strip_suffix(":*") {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let ip = match bare {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).ok(),
            None => host.parse::<std::net::Ipv4Addr>().map(IpAddr::V4).ok(),
        };
        return ip
            .map(|ip| FlowEndpoint { ip, port: None })
            .ok_or_else(|| format!("{s:?} is not IP:PORT (e.g. 10.0.0.4:22, [2001:db8::4]:22, 10.0.0.4:*)"));
    }
    s.parse::<SocketAddr>()
        .map(|a| FlowEndpoint {
            ip: a.ip(),
            port: Some(a.port()),
        })
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 10.0.0.4:22, [2001:db8::4]:22, 10.0.0.4:*)"))
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    Direction::parse(s).map_err(|e| e.to_string())
}

/// Runs the command line; errors print as one `error:` line, exit 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let res = dispatch(cli);
    tracing::debug!("done");
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`| head`) is not an error worth reporting. The
            // capture's errors are not that case: it ends normally itself
            // when its stdout closes (OutputClosed), so a broken pipe it
            // reports is its capture file's, a FIFO whose reader went away,
            // which its status already calls an Error.
            let capture_error = e.chain().any(|c| c.downcast_ref::<netwatch_capture::live::LiveError>().is_some());
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
                    || c.downcast_ref::<serde_json::Error>()
                        .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
            });
            if broken_pipe && !capture_error {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// A usage error found after parsing (an option missing or out of place
/// that clap cannot see): printed as clap prints its own, exit 2.
pub(crate) fn usage_error(msg: &str) -> ! {
    clap::Error::raw(clap::error::ErrorKind::MissingRequiredArgument, format!("{msg}\n")).exit()
}

/// An error's chain of causes on one line, each once: library errors often
/// print their source in their own message already.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let fmt = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(io::stderr)
        .with_target(false)
        .with_ansi(io::stderr().is_terminal());
    // -vv and more: seconds since start on every line, to see where time goes.
    let _ = if verbose >= 2 {
        fmt.with_timer(tracing_subscriber::fmt::time::uptime()).try_init()
    } else {
        fmt.without_time().try_init()
    };
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::IpFlowVerify(a) => ip_flow_verify(a),
        Command::NextHop(a) => next_hop(a),
        Command::EffectiveRoutes(a) => {
            let env = a.resources.load()?;
            let t = watcher::routes::effective_routes(&env, &a.nic)?;
            print_value(&serde_json::to_value(t)?, a.output)
        }
        Command::Topology(a) => {
            let env = a.resources.load()?;
            let p = watcher::topology::TopologyParameters {
                target_resource_group_name: a.resource_group.clone(),
                target_virtual_network: a.vnet.clone(),
                target_subnet: a.subnet.clone(),
            };
            let t = watcher::topology::topology(&env, &p, std::time::SystemTime::now()).context("topology")?;
            print_value(&serde_json::to_value(t)?, a.output)
        }
        Command::ConnectivityCheck(a) => {
            use watcher::connectivity::{check_connectivity, ConnectivityDestination, ConnectivityParameters, ConnectivityProtocol};
            match a.protocol {
                ConnectivityProtocol::Icmp if a.dest_port.is_some() || a.source_port.is_some() => {
                    usage_error("--protocol Icmp has no ports: leave out --dest-port and --source-port")
                }
                ConnectivityProtocol::Tcp if a.dest_port.is_none() => usage_error("--protocol Tcp needs --dest-port PORT"),
                _ => {}
            }
            let env = a.resources.load()?;
            let destination = match (a.dest_vm, a.dest_address) {
                (Some(vm), _) => ConnectivityDestination::VirtualMachine(vm),
                (None, Some(ip)) => ConnectivityDestination::Address(ip),
                // clap's "destination" group requires one of them.
                (None, None) => anyhow::bail!("give the destination with --dest-vm or --dest-address"),
            };
            let p = ConnectivityParameters {
                source_vm: a.source_vm,
                source_nic: a.source_nic,
                source_port: a.source_port,
                destination,
                destination_port: a.dest_port,
                protocol: a.protocol,
                preferred_ip_version: a.preferred_ip_version,
            };
            let info = check_connectivity(&env, &p).context("connectivity-check")?;
            print_value(&serde_json::to_value(info)?, a.output)
        }
        Command::Flows(a) => flows::flows(a),
        Command::Evaluate(a) => flows::evaluate(a),
        Command::FlowLogs(c) => flowlog_read::run(c),
        Command::Capture(a) => capture::run(*a),
        Command::SecurityGroupView(a) => {
            let env = a.resources.load()?;
            let v = watcher::security_group_view(&env, &a.vm)?;
            print_value(&serde_json::to_value(v)?, a.output)
        }
        Command::EffectiveSecurityRules(a) => {
            let env = a.resources.load()?;
            let nic = watcher::context::find_nic(&env, &a.nic)?;
            let v = watcher::effective_security_rules(&env, nic)?;
            print_value(&serde_json::to_value(v)?, a.output)
        }
    }
}

fn ip_flow_verify(a: IpFlowVerifyArgs) -> Result<()> {
    let env = a.resources.load()?;
    // `*` is allowed for the source port only (spec §3): the remote
    // port inbound, the local port outbound.
    let (source, destination, dest_flag) = match a.direction {
        Direction::Inbound => (a.remote, a.local, "--local"),
        Direction::Outbound => (a.local, a.remote, "--remote"),
    };
    if destination.port.is_none() {
        usage_error(&format!(
            "{dest_flag} is the destination of an {} flow: its port must be a number (`*` is allowed for the source port only)",
            a.direction
        ));
    }
    let p = IpFlowVerifyParameters {
        vm: a.vm.clone(),
        nic: a.nic.clone(),
        direction: a.direction,
        protocol: a.protocol,
        local_ip: a.local.ip,
        local_port: a.local.port.unwrap_or(0),
        remote_ip: a.remote.ip,
        remote_port: a.remote.port.unwrap_or(0),
        any_source_port: source.port.is_none(),
    };
    let (result, explanation) = watcher::ip_flow_verify(&env, &p).context("ip-flow-verify")?;
    let v = if a.explain {
        serde_json::to_value(explanation)?
    } else {
        serde_json::to_value(result)?
    };
    print_value(&v, a.output)
}

fn next_hop(a: NextHopArgs) -> Result<()> {
    let env = a.resources.load()?;
    let hop = watcher::routes::next_hop(&env, a.vm.as_deref(), a.nic.as_deref(), a.source, a.destination).context("next-hop")?;
    let v = match (hop, a.explain) {
        (Some(h), true) => {
            let mut v = serde_json::to_value(h.result())?;
            if let (Some(o), Ok(c)) = (v.as_object_mut(), serde_json::to_value(&h.candidates)) {
                o.insert("candidates".into(), c);
            }
            v
        }
        (Some(h), false) => serde_json::to_value(h.result())?,
        // No route at all (e.g. IPv6 without IPv6 address space): dropped.
        (None, _) => serde_json::json!({"nextHopType": "None", "nextHopIpAddress": null, "routeTableId": "System Route"}),
    };
    print_value(&v, a.output)
}
