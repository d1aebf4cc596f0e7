//! `cnn import IN.onnx OUT.safetensors`: a CNN in ONNX as a model file with a
//! generated config (see [`cnn::onnx`]).

use std::path::PathBuf;

use clap::Args;

use super::CmdResult;

#[derive(Debug, Args)]
#[command(
    after_help = "Reads CNNs as `cnn export` and PyTorch's exporters (TorchScript, \
    opset 13, and torch.export) write them: Conv, MaxPool, AveragePool, BatchNormalization, \
    Relu, Clip from 0 to 6 (ReLU6), LeakyRelu, Sigmoid, Tanh, Flatten/Reshape, Gemm or MatMul + Add, Softmax or \
    LogSoftmax at the end, Identity, Dropout; residual connections (Add of two computed \
    values: a Shortcut line) and concatenations along channels (Concat: a Route line).\n\n\
    Examples:\n  \
    cnn import model.onnx model.safetensors --classes zero,one\n  \
    cnn evaluate model.safetensors --data ../shared/data/mnist"
)]
pub struct ImportArgs {
    /// The ONNX file.
    input: PathBuf,
    /// The model file to write (replaced atomically if it exists; a device or FIFO such as
    /// /dev/stdout is written through).
    out: PathBuf,
    /// Names of the classes, in output order, comma-separated. Default: those stored by
    /// `cnn export`, else 0, 1, ...
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
}

pub fn run(args: ImportArgs) -> CmdResult {
    let meta = cnn::onnx::import::import_file(&args.input, &args.out, args.classes)?;
    super::say_written(
        &args.out,
        &format!(
            "wrote {} ({} classes); its config:\n{}",
            args.out.display(),
            meta.classes.len(),
            meta.config.trim_end()
        ),
    );
    Ok(())
}
