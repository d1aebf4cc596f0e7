//! `cnn serve RUN_DIR|MODEL`: a live page for the model (see `cnn::serve`).

use std::path::PathBuf;

use clap::Args;
use cnn::serve::{Batching, Options, Server};

use super::{CmdResult, Failure};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn serve runs/report1-10                      (a run folder: model, curves, live while it trains)\n  \
    cnn serve runs/report1-10/model.safetensors --port 0\n  \
    cnn serve runs/fashion --data ../shared/data/fashion-mnist   (adds the confusion matrix)\n  \
    cnn serve runs/report1-10 --batch-wait-ms 0    (no batching: each prediction a pass of its own)\n\n\
    The page is at the URL printed; Ctrl-C stops the server.")]
pub struct ServeArgs {
    /// A run folder written by `cnn train` (its newest model file is served and reloaded
    /// when training replaces it) or a model file.
    path: PathBuf,
    /// Address to listen on; the default keeps the page on this machine.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A dataset to evaluate the model on (its test split): confusion matrix and the
    /// images of each cell. Any form `cnn evaluate --data` takes.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize --data images whose size differs from the model's input.
    #[arg(long)]
    resize: bool,
    /// Also answer requests for this host name (repeatable). Without it the server answers
    /// only localhost, IP addresses and --host, so that no other site's page can reach it
    /// through a name of its own (DNS rebinding).
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_host: Vec<String>,
    /// How long a prediction may wait for others to share its forward pass, in
    /// milliseconds (fractions allowed, at most 1000); 0 turns batching off.
    #[arg(long, value_name = "MS", default_value_t = Batching::DEFAULT_WAIT_MS,
          allow_negative_numbers = true, value_parser = wait_ms)]
    batch_wait_ms: f64,
    /// The most predictions in one forward pass (1 to 1024).
    #[arg(long, value_name = "N", default_value_t = Batching::DEFAULT_MAX_BATCH,
          allow_negative_numbers = true, value_parser = max_batch)]
    max_batch: usize,
    /// How many forward passes may run at once, each on a copy of the model of its own
    /// (1 to 64): one worker gathers the next batch while another computes.
    #[arg(long, value_name = "N", default_value_t = Batching::DEFAULT_WORKERS,
          allow_negative_numbers = true, value_parser = workers)]
    workers: usize,
}

/// `--batch-wait-ms`: a number of milliseconds from 0 to [`Batching::MAX_WAIT_MS`].
fn wait_ms(s: &str) -> Result<f64, String> {
    let ms: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of milliseconds, got `{s}`"))?;
    if !(0.0..=Batching::MAX_WAIT_MS).contains(&ms) {
        return Err(format!(
            "must be from 0 (no batching) to {} milliseconds",
            Batching::MAX_WAIT_MS
        ));
    }
    Ok(ms)
}

/// `--max-batch`: a count from 1 to [`Batching::MAX_MAX_BATCH`].
fn max_batch(s: &str) -> Result<usize, String> {
    let n = super::arg_values::at_least_one(s)?;
    if n > Batching::MAX_MAX_BATCH {
        return Err(format!("at most {}", Batching::MAX_MAX_BATCH));
    }
    Ok(n)
}

/// `--workers`: a count from 1 to [`Batching::MAX_WORKERS`].
fn workers(s: &str) -> Result<usize, String> {
    let n = super::arg_values::at_least_one(s)?;
    if n > Batching::MAX_WORKERS {
        return Err(format!("at most {}", Batching::MAX_WORKERS));
    }
    Ok(n)
}

pub fn run(args: ServeArgs) -> CmdResult {
    let server = Server::bind(&Options {
        path: args.path.clone(),
        data: args.data,
        resize: args.resize,
        host: args.host,
        port: args.port,
        allow_hosts: args.allow_host,
        batching: Batching::new(args.batch_wait_ms, args.max_batch, args.workers)?,
    })?;
    // Tests and scripts read the URL from this line.
    println!("serving {} at {}", args.path.display(), server.url()?);
    println!("press Ctrl-C to stop");
    server.run_until_ctrl_c()?;
    Err(Failure::Interrupted("cnn serve: stopped by Ctrl-C".into()))
}
