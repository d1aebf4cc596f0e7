//! `cnn export MODEL OUT.onnx`: a model file as an ONNX graph (see [`cnn::onnx`]).

use std::path::PathBuf;

use clap::Args;

use super::CmdResult;

#[derive(Debug, Args)]
#[command(
    after_help = "The graph takes float32 [N, C, H, W] pixels in [0, 1] (N dynamic) and \
    gives the class probabilities [N, K], as `cnn predict` computes them. Opset 13.\n\n\
    Examples:\n  \
    cnn export runs/report1-10/model.safetensors model.onnx\n  \
    python -c \"import onnxruntime as ort; print(ort.InferenceSession('model.onnx').get_inputs()[0].shape)\""
)]
pub struct ExportArgs {
    /// A model file written by `cnn train` or `cnn import` (a checkpoint works too).
    model: PathBuf,
    /// The ONNX file to write (replaced atomically if it exists; a device or FIFO such as
    /// /dev/stdout is written through).
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> CmdResult {
    cnn::onnx::export::export_file(&args.model, &args.out)?;
    super::say_written(&args.out, &format!("wrote {}", args.out.display()));
    Ok(())
}
