//! The routes, their handlers and the JSON they answer with.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};

use super::batch::input_for;
use super::source::lock;
use super::{assets, AppState, Snapshot, MAX_UPLOAD};
use crate::layers::Window;
use crate::model::Model;
use crate::tensor::Tensor;

type Shared = State<Arc<AppState>>;

/// Every route; anything else is a JSON 404.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/style.css", get(assets::style))
        .route("/api/model", get(model))
        .route("/api/weights", get(weights))
        .route("/api/predict", post(predict))
        .route("/api/metrics", get(metrics))
        .route("/api/events", get(events))
        .route("/api/confusion", get(confusion))
        .route("/api/misclassified", get(misclassified))
        .fallback(not_found)
        .with_state(state)
}

/// An error answer: a status and `{"error": "one line"}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let one_line = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (self.status, Json(serde_json::json!({ "error": one_line }))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page or endpoint")
}

/// Runs `f` on a blocking thread (file reads, model loads, passes).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}"),
        )
    })?
}

/// Runs `f` on a blocking thread with the current model (reloaded first if its file
/// changed) and the inspection copy of it, which runs one request at a time: every layer's
/// output of one image, the `--data` evaluation. Predictions run elsewhere (`batch.rs`) and
/// never wait for it.
async fn with_inspect<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&AppState, &Arc<Snapshot>, &mut Model) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = Arc::clone(state);
    blocking(move || {
        let mut inspect = lock(&state.inspect);
        let snapshot = state.models.current();
        let model = match &mut *inspect {
            Some((version, model)) if *version == snapshot.version => model,
            copy => &mut copy.insert((snapshot.version, snapshot.model.clone())).1,
        };
        f(&state, &snapshot, model)
    })
    .await
}

// ---------------------------------------------------------------- GET /api/model

#[derive(Serialize)]
struct ModelInfo {
    /// The file served (the run folder's newest model file, or the one given).
    file: String,
    /// The run folder, when one is served.
    run: Option<String>,
    version: u64,
    reload_error: Option<String>,
    config: String,
    classes: Vec<String>,
    /// (C, H, W).
    input: [usize; 3],
    mean: Vec<f32>,
    std: Vec<f32>,
    layers: Vec<LayerInfo>,
    /// `cnn summary`'s table.
    summary: String,
    /// Whether `--data` was given (the confusion matrix endpoints answer).
    has_data: bool,
    /// How predictions are batched, and the batches so far.
    batching: BatchingInfo,
}

#[derive(Serialize)]
struct BatchingInfo {
    /// `--batch-wait-ms`.
    wait_ms: f64,
    /// `--max-batch`.
    max_batch: usize,
    /// `--workers`.
    workers: usize,
    /// Forward passes run for `POST /api/predict` (without `layers`) so far.
    passes: u64,
    /// Images in them.
    images: u64,
    /// The largest batch so far.
    largest: u64,
}

#[derive(Serialize)]
struct LayerInfo {
    index: usize,
    /// `Conv2D`, `MaxPool2D`, `Dense`, ...
    kind: &'static str,
    /// The summary's label, e.g. `Conv2D 16 3x3 s1 same relu`.
    label: String,
    /// The layers whose outputs it reads, in order (`null`: the network's input): the one
    /// above it, or for a Shortcut or a Route the layers its line names.
    reads: Vec<Option<usize>>,
    input: Vec<usize>,
    output: Vec<usize>,
    params: u128,
    flops: u128,
    /// The activation applied at the end of the layer (`none`, `relu`, `leaky_relu`, ...).
    activation: &'static str,
    /// LeakyReLU's slope for negative inputs.
    alpha: Option<f32>,
    /// Conv2D: kernel (kh, kw), stride and the zeros added above and to the left.
    conv: Option<ConvInfo>,
    /// MaxPool2D / AvgPool2D: window (ph, pw) and stride.
    pool: Option<PoolInfo>,
    /// The layer's own account of its shape, parameters and arithmetic (`cnn summary
    /// --explain`'s lines), shown under its heading.
    explain: Vec<String>,
}

#[derive(Serialize)]
struct ConvInfo {
    kh: usize,
    kw: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
}

#[derive(Serialize)]
struct PoolInfo {
    max: bool,
    ph: usize,
    pw: usize,
    stride: usize,
}

async fn model(State(state): Shared) -> ApiResult<ModelInfo> {
    let state = Arc::clone(&state);
    blocking(move || {
        let (snapshot, file, reload_error) = {
            let loaded = state.models.look();
            let file = loaded.stamp.path.display().to_string();
            (
                Arc::clone(&loaded.current),
                file,
                loaded.reload_error.clone(),
            )
        };
        describe(&state, &snapshot, file, reload_error)
    })
    .await
    .map(Json)
}

fn describe(
    state: &AppState,
    loaded: &Snapshot,
    file: String,
    reload_error: Option<String>,
) -> Result<ModelInfo, ApiError> {
    let layers = loaded
        .model
        .layers()
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let counts = layer.spec.counts(&layer.shapes.input, &layer.shapes.output);
            let act = layer.activation();
            let (conv, pool) = match layer.op.window() {
                Some(Window::Weighted {
                    kh,
                    kw,
                    stride,
                    pad_top,
                    pad_left,
                }) => (
                    Some(ConvInfo {
                        kh,
                        kw,
                        stride,
                        pad_top,
                        pad_left,
                    }),
                    None,
                ),
                Some(Window::Pooled {
                    max,
                    ph,
                    pw,
                    stride,
                }) => (
                    None,
                    Some(PoolInfo {
                        max,
                        ph,
                        pw,
                        stride,
                    }),
                ),
                None => (None, None),
            };
            LayerInfo {
                index,
                kind: layer.spec.name(),
                label: layer.spec.describe(),
                reads: layer
                    .shapes
                    .reads
                    .iter()
                    .map(|v| match v {
                        crate::layers::Value::Input => None,
                        crate::layers::Value::Output(j) => Some(*j),
                    })
                    .collect(),
                input: layer.shapes.input.clone(),
                output: layer.shapes.output.clone(),
                params: counts.params,
                flops: counts.flops,
                activation: act.name(),
                alpha: match act {
                    crate::layers::Activation::LeakyRelu(a) => Some(a),
                    _ => None,
                },
                conv,
                pool,
                explain: layer.explain().unwrap_or_default(),
            }
        })
        .collect();
    let summary = crate::summary::render(loaded.model.spec(), false)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let b = &state.batcher;
    let (passes, images, largest) = b.counts.get();
    Ok(ModelInfo {
        file,
        run: state
            .models
            .source
            .run_dir
            .as_ref()
            .map(|d| d.display().to_string()),
        version: loaded.version,
        reload_error,
        config: loaded.meta.config.clone(),
        classes: loaded.meta.classes.clone(),
        input: loaded.model.input_shape(),
        mean: loaded.meta.normalization.mean.clone(),
        std: loaded.meta.normalization.std.clone(),
        layers,
        summary,
        has_data: state.data.is_some(),
        batching: BatchingInfo {
            wait_ms: b.batching.wait.as_secs_f64() * 1000.0,
            max_batch: b.batching.max_batch,
            workers: b.batching.workers,
            passes,
            images,
            largest,
        },
    })
}

// ---------------------------------------------------------------- GET /api/weights

#[derive(Deserialize)]
struct LayerQuery {
    layer: usize,
}

#[derive(Serialize)]
struct Weights {
    layer: usize,
    version: u64,
    /// `[K, C, kh, kw]` for Conv2D, `[inputs, units]` or as stored for Dense.
    weight_shape: Vec<usize>,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

async fn weights(State(state): Shared, Query(q): Query<LayerQuery>) -> ApiResult<Weights> {
    let state = Arc::clone(&state);
    blocking(move || {
        let loaded = state.models.current();
        let layer = loaded.model.layer(q.layer).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no layer {} (the model has {} layers, numbered from 0)",
                    q.layer,
                    loaded.model.layers().len()
                ),
            )
        })?;
        let params = layer.params();
        let find = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, p)| p);
        let (Some(w), Some(b)) = (find("weight"), find("bias")) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("layer {} ({}) has no weights", q.layer, layer.spec.name()),
            ));
        };
        Ok(Weights {
            layer: q.layer,
            version: loaded.version,
            weight_shape: w.value.shape().to_vec(),
            weight: w.value.data().to_vec(),
            bias: b.value.data().to_vec(),
        })
    })
    .await
    .map(Json)
}

// ---------------------------------------------------------------- POST /api/predict

#[derive(Deserialize)]
struct PredictQuery {
    /// Scale an image of another size to the model's input (as `cnn predict --resize`).
    #[serde(default, deserialize_with = "flag")]
    resize: bool,
    /// Answer the input and every layer's output too (the page): one image at a time, on
    /// the inspection copy of the model, not batched.
    #[serde(default, deserialize_with = "flag")]
    layers: bool,
}

/// `resize`, `resize=1`, `resize=true` are on (`layers` likewise); `resize=0`, `resize=false` off.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(!matches!(s.as_str(), "0" | "false" | "no" | "off"))
}

#[derive(Serialize)]
struct Prediction {
    class: String,
    index: usize,
    classes: Vec<String>,
    /// Softmax of the logits, in class order (as `cnn predict`, bit for bit).
    probabilities: Vec<f32>,
    /// With `layers=1`: the normalised input, `(x / 255 - mean) / std`, as the first layer
    /// reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Values>,
    /// With `layers=1`: every layer's output for this image (the last one: the logits).
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<Vec<Values>>,
    /// The model version that answered (see `/api/model`).
    version: u64,
}

/// One tensor for one image: its shape, then its values flat in C, H, W order.
#[derive(Serialize)]
struct Values {
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Prediction {
    /// The answer of `model` for one image.
    fn new(model: &Snapshot, probabilities: Vec<f32>) -> Prediction {
        let index = crate::model::argmax(&probabilities);
        let classes = model.meta.classes.clone();
        Prediction {
            class: classes
                .get(index)
                .cloned()
                .unwrap_or_else(|| index.to_string()),
            index,
            classes,
            probabilities,
            input: None,
            layers: None,
            version: model.version,
        }
    }

    /// The JSON answer, with the header `x-cnn-batch: n`: the images in the pass that
    /// computed it.
    fn answer(self, n: usize) -> Response {
        let batch = (HeaderName::from_static("x-cnn-batch"), HeaderValue::from(n));
        ([batch], Json(self)).into_response()
    }
}

async fn predict(
    State(state): Shared,
    Query(q): Query<PredictQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD as u64) {
        return Err(too_large());
    }
    let _permit = state
        .uploads
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    // Reads at most MAX_UPLOAD bytes whatever the headers say (chunked uploads too).
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {e}"),
            )
        }
    })?;
    // `curl -F image=@digit.png` sends a form: its file part is the image.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bytes = match multipart_boundary(content_type) {
        None => bytes,
        Some(boundary) => match multipart_file(&bytes, &boundary) {
            Some(part) => bytes.slice_ref(part),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "the multipart/form-data upload has no part to read; send the image's \
                     bytes as the body instead (curl --data-binary @digit.png URL)",
                ))
            }
        },
    };
    // Decoded on a blocking thread, in parallel with the others, for the model as last
    // looked at (the batcher normalises the pixels again if it has changed since).
    let model = state.models.latest();
    let coming = (!q.layers).then(|| state.batcher.coming());
    let image = blocking(move || decode(&model, &bytes, q.resize)).await?;
    // The upload's bytes are gone: the next one may be read.
    drop(_permit);
    let Some(coming) = coming else {
        let p = with_inspect(&state, move |_, model, copy| inspect(model, copy, image)).await?;
        return Ok(p.answer(1));
    };
    let answer = state
        .batcher
        .predict(image.input, image.pixels, image.version, coming)
        .await?;
    Ok(Prediction::new(&answer.model, answer.probabilities).answer(answer.batch))
}

/// The boundary of a `multipart/form-data; boundary=...` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

/// The contents of the first part of a multipart body that carries a file (a `filename=`
/// in its headers), else of its first part; `None` when the body has no whole part.
fn multipart_file<'a>(body: &'a [u8], boundary: &str) -> Option<&'a [u8]> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let first = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    let mut pos = find(body, first.as_bytes())? + first.len();
    let mut first_part = None;
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            return first_part;
        }
        let rest = rest.strip_prefix(b"\r\n")?;
        let start = pos + 2;
        let head_len = find(rest, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&rest[..head_len]).to_ascii_lowercase();
        let content = start + head_len + 4;
        let end = content + find(&body[content..], next.as_bytes())?;
        let part = &body[content..end];
        if headers.contains("filename=") {
            return Some(part);
        }
        first_part.get_or_insert(part);
        pos = end + next.len();
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the image is over the limit of {} MB", MAX_UPLOAD >> 20),
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An uploaded image, decoded.
struct Image {
    /// (C, H, W) bytes, in the model's channels and size.
    pixels: Vec<u8>,
    /// The pixels normalised for the model version `version`, as its first layer reads them.
    input: Vec<f32>,
    version: u64,
}

/// Decodes an upload (PNG, JPEG or BMP) for `model`: 400 for anything else, 422 for an
/// image that cannot be read or, unless `resize`, is not the model's size.
fn decode(model: &Snapshot, bytes: &[u8], resize: bool) -> Result<Image, ApiError> {
    let unprocessable = |msg: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg);
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::Bmp) => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the body is not a PNG, JPEG or BMP image; send the image's bytes as the body \
                 (curl --data-binary @digit.png URL) or as a form's file (curl -F \
                 image=@digit.png URL)",
            ))
        }
    }
    let [c, h, w] = model.model.input_shape();
    if !resize {
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| unprocessable(format!("cannot read the image: {e}")))?;
        let format = reader.format();
        let (iw, ih) = reader.into_dimensions().map_err(|e| {
            unprocessable(
                crate::data::unreadable_image(Path::new("the upload"), format, &e).to_string(),
            )
        })?;
        if (ih as usize, iw as usize) != (h, w) {
            return Err(unprocessable(format!(
                "the image is {ih}x{iw} (height x width) and the model takes {h}x{w}; \
                 POST to /api/predict?resize=1 to scale it"
            )));
        }
    }
    let pixels = crate::data::image_from_bytes(Path::new("the upload"), bytes, [c, h, w], resize)
        .map_err(|e| unprocessable(e.to_string()))?;
    let input = model.meta.normalization.image(&pixels);
    Ok(Image {
        pixels,
        input,
        version: model.version,
    })
}

/// One image through `copy` (a copy of `model`'s model) alone: its probabilities, its
/// input and every layer's output.
fn inspect(model: &Snapshot, copy: &mut Model, image: Image) -> Result<Prediction, ApiError> {
    let input = input_for(model, image.input, &image.pixels, image.version)?;
    let [c, h, w] = copy.input_shape();
    let internal =
        |e: crate::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let x = Tensor::from_vec(&[1, c, h, w], input.clone()).map_err(internal)?;
    let probs = copy.keeping_outputs(|m| m.predict_proba(&x));
    let probs = probs.map_err(internal)?.into_vec();
    let layers = (0..copy.layers().len())
        .filter_map(|i| {
            let act = copy.activation(i)?;
            Some(Values {
                shape: copy.layers()[i].shapes.output.clone(),
                values: act.data().to_vec(),
            })
        })
        .collect();
    let mut p = Prediction::new(model, probs);
    p.input = Some(Values {
        shape: vec![c, h, w],
        values: input,
    });
    p.layers = Some(layers);
    Ok(p)
}

// ---------------------------------------------------------------- metrics and events

/// The epochs of the run so far, one JSON object per line of `metrics.jsonl`; none for a
/// model file, or before the first epoch ends.
fn read_epochs(state: &AppState) -> Result<Vec<serde_json::Value>, ApiError> {
    let Some(path) = state.models.source.metrics_file() else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
            ))
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{}:{}: not a JSON object: {e}", path.display(), i + 1),
                )
            })
        })
        .collect()
}

async fn metrics(State(state): Shared) -> ApiResult<Vec<serde_json::Value>> {
    let s = Arc::clone(&state);
    tokio::task::spawn_blocking(move || read_epochs(&s))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(Json)
}

/// How often the event stream looks at `metrics.jsonl`.
const POLL: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
struct EventsQuery {
    /// Epochs the client has already (from `/api/metrics`); default: those there now.
    after: Option<usize>,
}

/// `event: epoch` with one metrics.jsonl object per new epoch (its `id` is the count of
/// epochs sent so far); `event: reset` when the file got shorter (a new run over the old
/// one), after which the epochs come again from the first.
async fn events(
    State(state): Shared,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let sent = match q.after {
        Some(n) => n,
        None => read_epochs(&state)?.len(),
    };
    let start = (state, sent, VecDeque::<Event>::new());
    let stream = stream::unfold(start, |(state, mut sent, mut pending)| async move {
        loop {
            if let Some(event) = pending.pop_front() {
                return Some((Ok(event), (state, sent, pending)));
            }
            let mut stopping = state.stopping.clone();
            if *stopping.borrow() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stopping.changed() => return None,
            }
            let s = Arc::clone(&state);
            let Ok(Ok(epochs)) = tokio::task::spawn_blocking(move || read_epochs(&s)).await else {
                continue;
            };
            if epochs.len() < sent {
                sent = 0;
                pending.push_back(Event::default().event("reset").data("{}"));
            }
            for epoch in &epochs[sent..] {
                sent += 1;
                pending.push_back(
                    Event::default()
                        .event("epoch")
                        .id(sent.to_string())
                        .data(epoch.to_string()),
                );
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

// ---------------------------------------------------------------- --data

#[derive(Serialize)]
struct Confusion {
    data: String,
    images: usize,
    accuracy: f64,
    loss: f64,
    classes: Vec<String>,
    /// counts[t][p]: images of true class t predicted as p.
    counts: Vec<Vec<u64>>,
    version: u64,
}

/// The evaluation of the current model on `--data`, made once per model version.
fn evaluation(
    state: &AppState,
    loaded: &Snapshot,
    model: &mut Model,
) -> Result<Arc<crate::train::Evaluation>, ApiError> {
    let Some(ds) = &state.data else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no --data was given to cnn serve, so there is no confusion matrix",
        ));
    };
    let mut cached = lock(&state.evaluation);
    if let Some((version, e)) = cached.as_ref() {
        if *version == loaded.version {
            return Ok(Arc::clone(e));
        }
    }
    let e = crate::train::evaluate(
        model,
        ds,
        &loaded.meta.normalization,
        256,
        crate::train::TestViews::ONE,
    )
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let e = Arc::new(e);
    *cached = Some((loaded.version, Arc::clone(&e)));
    Ok(e)
}

async fn confusion(State(state): Shared) -> ApiResult<Confusion> {
    with_inspect(&state, |state, loaded, model| {
        let e = evaluation(state, loaded, model)?;
        let k = loaded.meta.classes.len();
        let mut counts = vec![vec![0u64; k]; k];
        for (&t, &p) in e.labels.iter().zip(&e.predictions) {
            if t < k && p < k {
                counts[t][p] += 1;
            }
        }
        let ds = state
            .data
            .as_ref()
            .map_or_else(String::new, |d| d.source.clone());
        Ok(Confusion {
            data: ds,
            images: e.labels.len(),
            accuracy: e.accuracy,
            loss: e.loss,
            classes: loaded.meta.classes.clone(),
            counts,
            version: loaded.version,
        })
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
struct CellQuery {
    truth: usize,
    predicted: usize,
    /// At most this many images (default 48, at most 500).
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Cell {
    truth: usize,
    predicted: usize,
    /// Images in the cell (more than those sent when over the limit).
    total: usize,
    /// (C, H, W) of each image.
    shape: [usize; 3],
    images: Vec<CellImage>,
}

#[derive(Serialize)]
struct CellImage {
    /// Position in the `--data` set (its test split).
    index: usize,
    /// The raw bytes, C, H, W order.
    pixels: Vec<u8>,
}

async fn misclassified(State(state): Shared, Query(q): Query<CellQuery>) -> ApiResult<Cell> {
    with_inspect(&state, move |state, loaded, model| {
        let Some(ds) = &state.data else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no --data was given"));
        };
        let k = loaded.meta.classes.len();
        for (name, value) in [("truth", q.truth), ("predicted", q.predicted)] {
            if value >= k {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{name}={value} is out of range: the model's classes are 0 to {}",
                        k.saturating_sub(1)
                    ),
                ));
            }
        }
        let e = evaluation(state, loaded, model)?;
        let limit = q.limit.unwrap_or(48).min(500);
        let hits: Vec<usize> = e
            .labels
            .iter()
            .zip(&e.predictions)
            .enumerate()
            .filter(|(_, (&t, &p))| t == q.truth && p == q.predicted)
            .map(|(i, _)| i)
            .collect();
        let len: usize = ds.shape.iter().product();
        let images = hits
            .iter()
            .take(limit)
            .map(|&i| CellImage {
                index: i,
                pixels: ds.images[i * len..(i + 1) * len].to_vec(),
            })
            .collect();
        Ok(Cell {
            truth: q.truth,
            predicted: q.predicted,
            total: hits.len(),
            shape: ds.shape,
            images,
        })
    })
    .await
    .map(Json)
}
