//! The `tandem` command: `run` the daemon, `check-config` a file, `ctl` a running node, watch
//! it with `top`, or `gen` load.

mod capture;
mod top;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tandem_config::Config;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Userspace L4 load balancer cluster on DPDK"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node. EAL arguments come from the config's [eal] section; any given after `--`
    /// are appended (and so override).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// The load generator: established or new flows at a rate, on DPDK ports; reports Mpps,
    /// loss, reordering and latency every second and at the end.
    Gen(Box<tandem_port::gen::GenArgs>),
    /// Validate a config: exit 0, or print each problem (key and why) and exit 1.
    CheckConfig { file: PathBuf },
    /// Send a command to a running node's control socket ("help" lists them); `ctl
    /// capture PORT... --out FILE.pcapng` captures its ports with dpdk-dumpcap.
    Ctl {
        #[arg(long, default_value = "/run/tandem/tandem.sock")]
        socket: PathBuf,
        /// Print the node's JSON answer instead of tables.
        #[arg(long)]
        json: bool,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// A live terminal view of a running node: services and backends (new flows/s, active
    /// flows, QoS factor, latency with a minute's sparkline, queues), ports and drops,
    /// cluster nodes; refreshed every second. Keys: 1 2 3 views, s sort, q quit.
    Top {
        #[arg(long, default_value = "/run/tandem/tandem.sock")]
        socket: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::from_path(path).map_err(|problems| {
        eprintln!("{}: {} problem(s):", path.display(), problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} ports, {} services, {} backends, {} workers)",
                    file.display(),
                    cfg.ports.len(),
                    cfg.services.len(),
                    cfg.services.iter().map(|s| s.backends.len()).sum::<usize>(),
                    cfg.workers.cores.len()
                );
                ExitCode::SUCCESS
            }
            Err(c) => c,
        },
        Cmd::Run { config, eal } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(c) => return c,
            };
            match tandem_node::run(cfg, Some(config), &eal) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Gen(args) => match tandem_port::gen::run(&args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem gen: {e:#}");
                ExitCode::from(2)
            }
        },
        Cmd::Top { socket } => top::run(&socket),
        Cmd::Ctl {
            socket,
            json,
            command,
        } => {
            if command.first().map(String::as_str) == Some("capture") {
                return capture::run(&socket, &command[1..]);
            }
            let line = command.join(" ");
            match tandem_control::client::request(&socket, &line) {
                Ok(v) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    } else {
                        print!("{}", tandem_control::client::render(&v));
                    }
                    if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("tandem ctl: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
