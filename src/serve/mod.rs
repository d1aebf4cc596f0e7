//! `cnn serve`: a web page that shows a model at work, and the JSON API it is built on.
//!
//! The server ([axum] on a small [tokio] runtime) answers:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /`, `/app.js`, `/style.css` | the page, embedded in the binary (`src/serve/assets.rs`) |
//! | `GET /api/model` | config, classes, normalisation, layers (shapes, geometry), summary |
//! | `GET /api/weights?layer=I` | layer I's weight and bias |
//! | `POST /api/predict[?resize=1][&layers=1]` | an image in (the body's bytes, or a form's file part), the class and probabilities out (header `x-cnn-batch`: the images of the pass it ran in); with `layers=1`, also the input and every layer's output |
//! | `GET /api/metrics` | the run's `metrics.jsonl`, as an array |
//! | `GET /api/events[?after=N]` | server-sent events: one `epoch` message per new epoch |
//! | `GET /api/confusion` | with `--data`: the confusion matrix of the served model |
//! | `GET /api/misclassified?truth=T&predicted=P` | with `--data`: the images of one cell (T and P below the class count, else 400) |
//!
//! Every error is a 4xx or 5xx status with the body `{"error": "one line"}`.
//!
//! Only requests for the names the server is reached by are answered (`localhost`, IP
//! addresses, `--host`, `--allow-host`), and a `POST` from another site's page is refused:
//! a guard against DNS rebinding (`src/serve/hosts.rs`).
//!
//! No request path reaches the file system: the router knows a fixed set of routes and the
//! assets are bytes compiled in, so `/../`, `%2e%2e` and the like find nothing (404). The
//! only files read are the model file, the run folder's `metrics.jsonl` and the `--data`
//! set, all named on the command line.
//!
//! Predictions are batched (`batch.rs`): a handler decodes and normalises its image on a
//! blocking thread, in parallel with the others, and hands it to a worker that gathers the
//! requests arriving together (for at most `--batch-wait-ms`, up to `--max-batch`) into one
//! forward pass on a copy of the model of its own, whose layers use every core; `--workers`
//! such workers take turns at the queue, so one gathers while another computes. A pass
//! needs `&mut Model` (its layers keep their buffers), so no model is shared across a
//! pass: the requests for every layer's output (`?layers=1`, the page) and the `--data`
//! evaluation run on another copy, one at a time, and do not hold up the predictions.
//! The model as loaded is kept apart and never run (`source.rs`); every copy is taken
//! again when it changes. Before each batch and each other request, the model file is
//! checked (modification time and length) and loaded again if `cnn train` replaced it.

mod api;
mod assets;
mod batch;
mod hosts;
mod source;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::train::Evaluation;

pub use batch::Batching;
pub use hosts::AllowedHosts;
pub use source::{Loaded, Models, Snapshot, Source};

/// The largest upload `POST /api/predict` reads (10 MB); a larger body gets 413 before the
/// rest of it is read.
pub const MAX_UPLOAD: usize = 10 << 20;

/// What to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// A run folder or a model file.
    pub path: PathBuf,
    /// A dataset to evaluate the model on (the confusion matrix and its images).
    pub data: Option<PathBuf>,
    /// Resize `--data` images to the model's input size.
    pub resize: bool,
    /// Address to listen on (`127.0.0.1` keeps the page on this machine).
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Host names to answer besides `localhost`, IP addresses and `host` (see
    /// [`AllowedHosts`]).
    pub allow_hosts: Vec<String>,
    /// How predictions are batched.
    pub batching: Batching,
}

/// The state every request shares.
pub(crate) struct AppState {
    models: Arc<Models>,
    /// The predictions' queue and worker.
    batcher: batch::Batcher,
    /// The copy of the model that answers `?layers=1` and evaluates `--data`, one request
    /// at a time, with the version it was copied from.
    inspect: Mutex<Option<(u64, Model)>>,
    /// The `--data` set, its labels matched to the model's classes.
    data: Option<Dataset>,
    /// The evaluation on `data` of one model version, made when first asked for.
    evaluation: Mutex<Option<(u64, Arc<Evaluation>)>>,
    /// Turns true on Ctrl-C: event streams end so that the server can stop.
    stopping: watch::Receiver<bool>,
    /// Uploads read at once: with each at most [`MAX_UPLOAD`], their memory stays under
    /// [`UPLOADS_AT_ONCE`] x 10 MB however many clients send (others wait their turn).
    uploads: tokio::sync::Semaphore,
}

/// How many `POST /api/predict` bodies may be held in memory at once.
pub const UPLOADS_AT_ONCE: usize = 16;

/// A server bound to its address, not yet answering.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop_tx: watch::Sender<bool>,
    allowed: Arc<AllowedHosts>,
}

impl Server {
    /// Loads the model (and `--data`), and binds the address.
    ///
    /// # Errors
    /// A path that is no run folder or model file, a model or dataset that does not load,
    /// an address that cannot be bound.
    pub fn bind(opts: &Options) -> Result<Server> {
        let source = Source::new(&opts.path)?;
        let loaded = Loaded::first(&source)?;
        let batching = Batching::new(
            opts.batching.wait.as_secs_f64() * 1000.0,
            opts.batching.max_batch,
            opts.batching.workers,
        )?;
        let data = match &opts.data {
            Some(path) => Some(load_data(path, &loaded, opts.resize)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start the server's threads: {e}")))?;
        let addr = (opts.host.as_str(), opts.port);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot listen on {}:{}: {e}; choose another --port (0 picks a free one) \
                     or --host",
                    opts.host, opts.port
                ))
            })?;
        let (stop_tx, stopping) = watch::channel(false);
        let models = Arc::new(Models::new(source, loaded));
        let batcher = batch::Batcher::start(Arc::clone(&models), batching)?;
        let state = Arc::new(AppState {
            models,
            batcher,
            inspect: Mutex::new(None),
            data,
            evaluation: Mutex::new(None),
            stopping,
            uploads: tokio::sync::Semaphore::new(UPLOADS_AT_ONCE),
        });
        Ok(Server {
            runtime,
            listener,
            state,
            stop_tx,
            allowed: Arc::new(AllowedHosts::new(&opts.host, &opts.allow_hosts)),
        })
    }

    /// The address actually bound (with the port picked when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Invalid(format!("the server's address is unknown: {e}")))
    }

    /// The page's URL: `http://HOST:PORT/` (IPv6 hosts in brackets).
    pub fn url(&self) -> Result<String> {
        Ok(format!("http://{}/", self.local_addr()?))
    }

    /// Answers requests until Ctrl-C; then stops taking connections, ends the event
    /// streams, lets requests under way finish (for at most [`STOP_GRACE`]) and returns.
    pub fn run_until_ctrl_c(self) -> Result<()> {
        let Server {
            runtime,
            listener,
            state,
            stop_tx,
            allowed,
        } = self;
        let guard = axum::middleware::from_fn_with_state(allowed, hosts::guard);
        let app = api::router(state).layer(guard);
        let mut stopped = stop_tx.subscribe();
        runtime.block_on(async move {
            let signal = async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop_tx.send(true);
            };
            let server = axum::serve(listener, app).with_graceful_shutdown(signal);
            let grace = async move {
                while !*stopped.borrow_and_update() {
                    if stopped.changed().await.is_err() {
                        break;
                    }
                }
                tokio::time::sleep(STOP_GRACE).await;
            };
            tokio::select! {
                served = server => served.map_err(|e| Error::Invalid(format!("the server failed: {e}"))),
                () = grace => Ok(()),
            }
        })?;
        runtime.shutdown_timeout(STOP_GRACE);
        Ok(())
    }
}

/// How long requests under way may take to finish after Ctrl-C.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The `--data` set for the model: its test split, in the model's channels and size, its
/// labels matched to the model's classes by name (as `cnn evaluate` does).
fn load_data(path: &std::path::Path, loaded: &Loaded, resize: bool) -> Result<Dataset> {
    let [c, h, w] = loaded.current.model.input_shape();
    let ds = crate::data::load(
        path,
        &crate::data::LoadOptions {
            split: crate::data::Split::Test,
            channels: Some(c),
            size: Some((h, w)),
            resize,
        },
    )?;
    ds.map_to_classes(&loaded.current.meta.classes)
}
