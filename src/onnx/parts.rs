//! Reading the parts of an ONNX graph that `cnn import` needs, checked: its constant tensors
//! (initialisers and `Constant` nodes) as float or int64 values, and node attributes.
//!
//! Every size comes from the file, so each is checked before anything is allocated: a
//! tensor's dims must hold at most [`config::MAX_PARAMS`] values, and its data must be as long
//! as its dims say (the data itself is already in memory, bounded by the file's size).

use std::collections::HashMap;

use super::proto::{AttributeProto, TensorProto};
use super::{FLOAT, INT64};
use crate::config;

/// The constant tensors of a graph: its initialisers and the outputs of `Constant` nodes.
pub(crate) struct Constants<'a> {
    pub map: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Constants<'a> {
    pub fn get(&self, name: &str) -> Option<&'a TensorProto> {
        self.map.get(name).copied()
    }

    /// The float tensor `name` with its shape, checked: present, float, stored here, with as
    /// many values as its dims say, all finite.
    pub fn floats(&self, name: &str) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
        let t = self
            .get(name)
            .ok_or_else(|| format!("`{}` is not a constant (an initialiser)", short(name)))?;
        let shape = dims(t).map_err(|e| format!("tensor `{}`: {e}", short(name)))?;
        let n: usize = shape.iter().product();
        if t.data_type != Some(FLOAT) {
            return Err(format!(
                "tensor `{}` has data type {}, expected float (1)",
                short(name),
                t.data_type.unwrap_or(0)
            ));
        }
        let values: Vec<f32> = match &t.raw_data {
            Some(raw) if !raw.is_empty() => {
                if raw.len() != n * 4 {
                    return Err(format!(
                        "tensor `{}` has {} bytes of data for shape {shape:?} ({} expected)",
                        short(name),
                        raw.len(),
                        n * 4
                    ));
                }
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            _ => {
                if t.float_data.len() != n {
                    return Err(format!(
                        "tensor `{}` has {} values for shape {shape:?} ({n} expected)",
                        short(name),
                        t.float_data.len()
                    ));
                }
                t.float_data.clone()
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "tensor `{}` holds {} at index {i}",
                short(name),
                values[i]
            ));
        }
        Ok((shape, values))
    }

    /// The int64 values of the tensor `name` (a Reshape's shape, a batch count).
    pub fn ints(&self, name: &str) -> std::result::Result<Vec<i64>, String> {
        let t = self
            .get(name)
            .ok_or_else(|| format!("`{}` is not a constant (an initialiser)", short(name)))?;
        let shape = dims(t).map_err(|e| format!("tensor `{}`: {e}", short(name)))?;
        let n: usize = shape.iter().product();
        if t.data_type != Some(INT64) {
            return Err(format!("tensor `{}` is not int64", short(name)));
        }
        let values: Vec<i64> = match &t.raw_data {
            Some(raw) if !raw.is_empty() => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            _ => t.int64_data.clone(),
        };
        if values.len() != n {
            return Err(format!(
                "tensor `{}` has {} values for shape {shape:?}",
                short(name),
                values.len()
            ));
        }
        Ok(values)
    }

    /// A float scalar (Dropout's ratio).
    pub fn scalar(&self, name: &str) -> std::result::Result<f32, String> {
        match self.floats(name)? {
            (_, v) if v.len() == 1 => Ok(v[0]),
            (s, _) => Err(format!(
                "`{}` has shape {s:?}, expected one value",
                short(name)
            )),
        }
    }
}

/// A tensor's dims as sizes, each from 0 to [`MAX_DIM`] (times [`MAX_DIM`] for a Dense
/// weight's inputs), with a product that fits the caps of a config.
pub fn dims(t: &TensorProto) -> std::result::Result<Vec<usize>, String> {
    let mut total: u128 = 1;
    let mut out = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format!("dims {:?} has a negative size", t.dims))?;
        total = total.saturating_mul(d as u128);
        out.push(d);
    }
    if total > config::MAX_PARAMS {
        return Err(format!(
            "dims {:?} hold {total} values, more than the {} a model may have",
            t.dims,
            config::MAX_PARAMS
        ));
    }
    Ok(out)
}

/// A node's attributes by name.
pub(crate) struct Attrs<'a> {
    pub list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    /// The attributes of `node`.
    pub fn of(node: &'a super::proto::NodeProto) -> Attrs<'a> {
        Attrs {
            list: &node.attribute,
        }
    }

    pub fn find(&self, name: &str) -> Option<&AttributeProto> {
        self.list.iter().find(|a| a.name.as_deref() == Some(name))
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.find(name).and_then(|a| a.i).unwrap_or(default)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.find(name).and_then(|a| a.f).unwrap_or(default)
    }

    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        self.find(name).map(|a| a.ints.as_slice())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.find(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    /// The names of the attributes not in `known`.
    pub fn unknown(&self, known: &[&str]) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|a| a.name.as_deref())
            .filter(|n| !known.contains(n))
            .map(short)
            .collect()
    }
}

/// At most 80 characters of a name taken from the file, escaped (it may hold newlines).
pub fn short(s: &str) -> String {
    let t: String = s.chars().take(80).collect();
    let t = format!("{t:?}");
    t[1..t.len() - 1].to_string()
}
