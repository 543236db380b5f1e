//! Command-line interface: argument types only (clap derive). `main.rs` turns them into work;
//! nothing else in the crate knows about clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// trainyard: SageMaker training jobs on your own machines.
#[derive(Debug, Parser)]
#[command(
    name = "trainyard",
    version,
    about,
    after_help = "Exit codes: 0 success (job Completed), 1 the job or operation failed, 2 invalid usage or request.\n\
                  State lives under $TRAINYARD_HOME (default ~/.trainyard)."
)]
pub struct Cli {
    /// Talk to a trainyard server at this URL (`http://host:port`) instead of running jobs
    /// in this process (train, jobs, logs).
    #[arg(long, global = true, env = "TRAINYARD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a training job from a CreateTrainingJob request (JSON) and follow it to the end.
    Train {
        /// The request: the JSON body of SageMaker's CreateTrainingJob (`-` for stdin).
        job: PathBuf,
        /// Use this TrainingJobName instead of the one in the file.
        #[arg(long)]
        name: Option<String>,
        /// Append a timestamp to the name, as the SageMaker SDK does, so the same file can run again.
        #[arg(long)]
        unique: bool,
        /// Do not print the training process's output (it is still kept in the logs).
        #[arg(long, short)]
        quiet: bool,
    },
    /// Inspect job records.
    Jobs {
        /// Which listing.
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Print a job's logs (all hosts, or one).
    Logs {
        /// Training job name.
        name: String,
        /// Only this host (`algo-1`, ...).
        #[arg(long)]
        host: Option<String>,
        /// Keep printing new lines until the job ends (needs --endpoint).
        #[arg(long, short)]
        follow: bool,
    },
    /// Serve the SageMaker training API over HTTP and run submitted jobs in the background.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// How many hosts may run at once; jobs beyond it wait (status Pending).
        #[arg(long, default_value_t = default_capacity())]
        capacity: usize,
        /// Refuse unknown request members instead of ignoring them.
        #[arg(long)]
        strict: bool,
    },
    /// Mount `s3://bucket/prefix` read-only at DIR the way a FastFile channel sees it, in the
    /// foreground; Ctrl-C or SIGTERM unmounts.
    Mount {
        /// `s3://bucket/prefix` (the prefix is treated as a folder).
        uri: String,
        /// An empty directory to mount on.
        dir: std::path::PathBuf,
        /// Cache budget in MiB shared by all open files.
        #[arg(long, default_value_t = 256)]
        cache_mib: u64,
    },
    /// Put data into and look at the object store (embedded store by default).
    S3 {
        /// Which operation.
        #[command(subcommand)]
        command: S3Command,
    },
    /// What a cluster node runs for one host of a job (started by the Slurm executor).
    Host {
        /// Which operation.
        #[command(subcommand)]
        command: HostCommand,
    },
}

/// `trainyard host ...`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Run one host of a job here, reporting to the server; the job token is read from
    /// `TRAINYARD_HOST_TOKEN`.
    Run {
        /// The server's URL as this node reaches it.
        #[arg(long)]
        server: String,
        /// Training job name.
        #[arg(long)]
        job: String,
        /// 0-based host index (default: the Slurm task rank, `SLURM_PROCID`).
        #[arg(long, env = "SLURM_PROCID")]
        host: usize,
    },
}

fn default_capacity() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `trainyard jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, oldest first.
    List {
        /// Print ListTrainingJobs-shaped JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a job in the DescribeTrainingJob JSON shape.
    Describe {
        /// Training job name.
        name: String,
    },
    /// Change a job's warm-pool keep-alive period (UpdateTrainingJob); 0 releases its pool.
    Update {
        /// Training job name.
        name: String,
        /// New `ResourceConfig.KeepAlivePeriodInSeconds` (0 to 21600).
        #[arg(long = "keep-alive")]
        keep_alive: i64,
    },
    /// Stop a running job (needs --endpoint; a local `trainyard train` stops on Ctrl-C).
    Stop {
        /// Training job name.
        name: String,
    },
}

/// `trainyard s3 ...`.
#[derive(Debug, Subcommand)]
pub enum S3Command {
    /// List objects (`s3://bucket/prefix`); folders are shown as `PRE` unless --recursive.
    Ls {
        /// `s3://bucket[/prefix]`.
        uri: String,
        /// List every object under the prefix.
        #[arg(long, short)]
        recursive: bool,
    },
    /// Copy a local file or directory to the store, or an object or prefix from it.
    Cp {
        /// Source: a local path or `s3://bucket/key`.
        src: String,
        /// Destination: a local path or `s3://bucket/key`.
        dst: String,
        /// Copy a directory tree / every object under a prefix.
        #[arg(long, short)]
        recursive: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn train_flags_parse() {
        let cli =
            Cli::try_parse_from(["trainyard", "train", "job.json", "--unique", "--name", "x"])
                .unwrap();
        match cli.command {
            Command::Train {
                job,
                name,
                unique,
                quiet,
            } => {
                assert_eq!(job, PathBuf::from("job.json"));
                assert_eq!(name.as_deref(), Some("x"));
                assert!(unique && !quiet);
            }
            other => panic!("{other:?}"),
        }
    }
}
