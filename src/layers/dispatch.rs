//! The macro behind the list of layer kinds in [`super`]: from one line per kind it makes
//! the [`LayerSpec`](super::LayerSpec) and [`Op`](super::Op) enums and their methods, each
//! a `match` that hands the call to the kind's [`LayerKind`](super::LayerKind) or
//! [`LayerOp`](super::LayerOp) implementation. Nothing here knows any layer by name.

/// `layer_kinds! { Variant => module::Kind, ... }`.
macro_rules! layer_kinds {
    ($($(#[$doc:meta])* $variant:ident => $kind:ty),* $(,)?) => {
        /// One layer of a network, as one config line describes it: plain data, no
        /// parameters. Each variant holds its kind's config struct.
        #[derive(Debug, Clone, PartialEq)]
        pub enum LayerSpec {
            $($(#[$doc])* $variant(<$kind as LayerKind>::Spec),)*
        }

        /// A layer's operation at run time: its parameters and buffers.
        #[derive(Debug, Clone)]
        pub enum Op {
            $($(#[$doc])* $variant(<$kind as LayerKind>::Op),)*
        }

        impl LayerSpec {
            /// Every layer name a config line may start with, with the keys it takes.
            pub fn line_names() -> Vec<(&'static str, &'static [&'static str])> {
                let mut names = Vec::new();
                $(names.extend_from_slice(<$kind as LayerKind>::LINES);)*
                names
            }

            /// Parses a layer line whose name is `name` (one of [`LayerSpec::line_names`],
            /// as listed there) from its keys.
            pub fn parse(name: &str, keys: &LineKeys) -> Option<Result<LayerSpec>> {
                $(
                    if <$kind as LayerKind>::LINES.iter().any(|(n, _)| *n == name) {
                        return Some(<$kind as LayerKind>::parse(name, keys).map(LayerSpec::$variant));
                    }
                )*
                None
            }

            /// The reader `cnn import` uses for a node of ONNX op `op`: that of the first kind
            /// whose [`LayerKind::ONNX_OPS`] names it.
            pub fn onnx_reader(op: &str) -> Option<Reader> {
                $(
                    if <$kind as LayerKind>::ONNX_OPS.contains(&op) {
                        return Some(<$kind as LayerKind>::onnx_import);
                    }
                )*
                None
            }

            /// Every ONNX op type some kind reads, in the list's order.
            pub fn onnx_ops() -> Vec<&'static str> {
                let mut ops = Vec::new();
                $(ops.extend_from_slice(<$kind as LayerKind>::ONNX_OPS);)*
                ops
            }

            /// The layer's name as written in configs (`Conv2D`, `ReLU`).
            pub fn name(&self) -> &'static str {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::name(s),)* }
            }

            /// What the layer reads of its input; see [`InputForm`].
            pub fn input_form(&self) -> InputForm {
                match self { $(LayerSpec::$variant(_) => <$kind as LayerKind>::INPUT,)* }
            }

            /// The key whose value a shape error on this layer points at (`kernel`).
            pub fn shape_key(&self) -> Option<&'static str> {
                match self { $(LayerSpec::$variant(_) => <$kind as LayerKind>::SHAPE_KEY,)* }
            }

            /// The key whose value a shape error on an input of shape `input` points at
            /// (`kernel`; Conv2D's `groups` when they do not divide the input's channels).
            pub fn shape_error_key(&self, input: &[usize]) -> Option<&'static str> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::shape_error_key(s, input),)* }
            }

            /// The per-sample output shape for a per-sample input shape.
            pub fn output_shape(&self, input: &[usize]) -> Result<SampleShape> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::output_shape(s, input),)* }
            }

            /// Parameters and forward FLOPs per sample, in `u128` so that the config's size
            /// caps can be checked before anything overflows.
            pub fn counts(&self, input: &[usize], output: &[usize]) -> Counts {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::counts(s, input, output),)* }
            }

            /// The summary's label (`Conv2D 16 3x3 same relu`).
            pub fn describe(&self) -> String {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::describe(s),)* }
            }

            /// The arithmetic behind the summary's numbers, one line each.
            pub fn explain(&self, input: &[usize], output: &[usize]) -> Result<Vec<String>> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::explain(s, input, output),)* }
            }

            /// The activation applied at the end of this layer (fused, or the layer itself).
            pub fn activation(&self) -> Activation {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::activation(s),)* }
            }

            /// The same layer with its activation replaced (unchanged if it has none).
            pub fn with_activation(&self, act: Activation) -> LayerSpec {
                match self {
                    $(LayerSpec::$variant(s) => LayerSpec::$variant(<$kind as LayerKind>::with_activation(s, act)),)*
                }
            }

            /// The key that sets this layer's output size and its value (`units=10`).
            pub fn output_key(&self) -> Option<(&'static str, usize)> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::output_key(s),)* }
            }

            /// See [`LayerKind::onnx`].
            pub fn onnx(&self, g: &mut Graph, input: &str, at: &LayerAt) -> Result<String> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::onnx(s, g, input, at),)* }
            }

            /// See [`LayerKind::gradcheck_batch`].
            pub fn gradcheck_batch(&self) -> usize {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::gradcheck_batch(s),)* }
            }

            /// The same layer with its output size set to `n` (`units=n`; unchanged if it
            /// has no such key).
            pub fn with_output_size(&self, n: usize) -> LayerSpec {
                match self {
                    $(LayerSpec::$variant(s) => LayerSpec::$variant(<$kind as LayerKind>::with_output_size(s, n)),)*
                }
            }

            /// The runtime operation on a per-sample `input` shape, with zero parameters.
            pub fn build(&self, input: &[usize]) -> Result<Op> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::build(s, input).map(Op::$variant),)* }
            }

            /// See [`LayerKind::READS_ABOVE`].
            pub fn reads_above(&self) -> bool {
                match self { $(LayerSpec::$variant(_) => <$kind as LayerKind>::READS_ABOVE,)* }
            }

            /// See [`LayerKind::REFS_KEY`].
            pub fn refs_key(&self) -> Option<&'static str> {
                match self { $(LayerSpec::$variant(_) => <$kind as LayerKind>::REFS_KEY,)* }
            }

            /// See [`LayerKind::refs`].
            pub fn refs(&self) -> Vec<i64> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::refs(s),)* }
            }

            /// The per-sample output shape for the values the layer reads, with their
            /// shapes ([`LayerKind::output_shape_of`]).
            pub fn output_shape_of(&self, inputs: &[InputShape]) -> Result<SampleShape> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::output_shape_of(s, inputs),)* }
            }

            /// See [`LayerKind::explain_of`].
            pub fn explain_of(&self, inputs: &[InputShape], output: &[usize]) -> Result<Vec<String>> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::explain_of(s, inputs, output),)* }
            }

            /// The runtime operation for the values it reads ([`LayerKind::build_of`]).
            pub fn build_of(&self, inputs: &[InputShape]) -> Result<Op> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::build_of(s, inputs).map(Op::$variant),)* }
            }

            /// See [`LayerKind::onnx_many`].
            pub fn onnx_many(&self, g: &mut Graph, inputs: &[&str], at: &LayerAt) -> Result<String> {
                match self { $(LayerSpec::$variant(s) => <$kind as LayerKind>::onnx_many(s, g, inputs, at),)* }
            }
        }

        impl Op {
            /// See [`LayerOp::prepare`].
            pub fn prepare(&mut self, pass: Pass) {
                match self { $(Op::$variant(l) => LayerOp::prepare(l, pass),)* }
            }

            /// See [`LayerOp::forward`].
            pub fn forward(&mut self, x: &[f32], y: &mut [f32], n: usize) {
                match self { $(Op::$variant(l) => LayerOp::forward(l, x, y, n),)* }
            }

            /// See [`LayerOp::backward`].
            pub fn backward(&mut self, x: &[f32], y: &[f32], dy: &mut [f32], dx: Option<&mut [f32]>, n: usize) {
                match self { $(Op::$variant(l) => LayerOp::backward(l, x, y, dy, dx, n),)* }
            }

            /// See [`LayerOp::forward_many`].
            pub fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], n: usize) {
                match self { $(Op::$variant(l) => LayerOp::forward_many(l, xs, y, n),)* }
            }

            /// See [`LayerOp::backward_many`].
            pub fn backward_many(
                &mut self,
                xs: &[&[f32]],
                y: &[f32],
                dy: &mut [f32],
                dxs: &mut [Option<&mut [f32]>],
                n: usize,
            ) {
                match self { $(Op::$variant(l) => LayerOp::backward_many(l, xs, y, dy, dxs, n),)* }
            }

            /// See [`LayerOp::passes_input_on`].
            pub fn passes_input_on(&self) -> bool {
                match self { $(Op::$variant(l) => LayerOp::passes_input_on(l),)* }
            }

            /// See [`LayerOp::params`].
            pub fn params(&self) -> Vec<(&'static str, &Param)> {
                match self { $(Op::$variant(l) => LayerOp::params(l),)* }
            }

            /// See [`LayerOp::params_mut`].
            pub fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
                match self { $(Op::$variant(l) => LayerOp::params_mut(l),)* }
            }

            /// See [`LayerOp::fans`].
            pub fn fans(&self) -> Option<(usize, usize)> {
                match self { $(Op::$variant(l) => LayerOp::fans(l),)* }
            }

            /// See [`LayerOp::buffers`].
            pub fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
                match self { $(Op::$variant(l) => LayerOp::buffers(l),)* }
            }

            /// See [`LayerOp::buffers_mut`].
            pub fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
                match self { $(Op::$variant(l) => LayerOp::buffers_mut(l),)* }
            }

            /// See [`LayerOp::check_batch`].
            pub fn check_batch(&self, n: usize, pass: Pass) -> std::result::Result<(), String> {
                match self { $(Op::$variant(l) => LayerOp::check_batch(l, n, pass),)* }
            }

            /// See [`LayerOp::filters`].
            pub fn filters(&self) -> Option<Filters<'_>> {
                match self { $(Op::$variant(l) => LayerOp::filters(l),)* }
            }

            /// See [`LayerOp::window`].
            pub fn window(&self) -> Option<Window> {
                match self { $(Op::$variant(l) => LayerOp::window(l),)* }
            }

            /// See [`LayerOp::reference`].
            pub fn reference(&self, x: &[f64], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
                match self { $(Op::$variant(l) => LayerOp::reference(l, x, params, n),)* }
            }

            /// See [`LayerOp::reference_many`].
            pub fn reference_many(&self, xs: &[&[f64]], params: &[Vec<f64>], n: usize) -> Option<Vec<f64>> {
                match self { $(Op::$variant(l) => LayerOp::reference_many(l, xs, params, n),)* }
            }

            /// See [`LayerOp::reference_choices`].
            pub fn reference_choices(&self, n: usize) -> Vec<(usize, Vec<usize>)> {
                match self { $(Op::$variant(l) => LayerOp::reference_choices(l, n),)* }
            }

            /// See [`LayerOp::reference_channel`].
            pub fn reference_channel(&self, slot: usize, e: usize) -> Option<(usize, usize)> {
                match self { $(Op::$variant(l) => LayerOp::reference_channel(l, slot, e),)* }
            }

            /// See [`LayerOp::reference_one_channel`].
            pub fn reference_one_channel(
                &self,
                x: &[f64],
                base_z: &[f64],
                params: &[Vec<f64>],
                c: usize,
                n: usize,
            ) -> Option<Vec<f64>> {
                match self { $(Op::$variant(l) => LayerOp::reference_one_channel(l, x, base_z, params, c, n),)* }
            }

            /// See [`LayerOp::reference_changed_inputs`].
            #[allow(clippy::too_many_arguments)]
            pub fn reference_changed_inputs(
                &self,
                x: &[f64],
                base_x: &[f64],
                base_z: &[f64],
                params: &[Vec<f64>],
                channels: &[usize],
                block: usize,
                n: usize,
            ) -> Option<Vec<f64>> {
                match self {
                    $(Op::$variant(l) => LayerOp::reference_changed_inputs(l, x, base_x, base_z, params, channels, block, n),)*
                }
            }

            /// See [`LayerOp::reference_channel_block`].
            pub fn reference_channel_block(&self, block: usize) -> Option<usize> {
                match self { $(Op::$variant(l) => LayerOp::reference_channel_block(l, block),)* }
            }
        }
    };
}
