//! Shape-only layers: `Flatten` (`(H, W, C) -> (H W C,)`), `Reshape(target_shape)` and
//! `Identity`. Row-major NHWC data keeps its order, so each is a copy forward and backward.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

use super::spec::{BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.Flatten`: no arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct FlattenConfig {}

/// `keras.layers.Identity`: no arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct IdentityConfig {}

/// `keras.layers.Reshape`: the per-sample target shape, one entry of which may be `-1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReshapeConfig {
    pub target_shape: Vec<i64>,
}

impl BuildLayer for FlattenConfig {
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let n = ctx.one_input(inputs)?.iter().product();
        Ok((Op::unary(Reshape { per_sample: n }), vec![n]))
    }
}

impl BuildLayer for IdentityConfig {
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?;
        Ok((Op::unary(Reshape { per_sample: shape.iter().product() }), shape.to_vec()))
    }
}

impl BuildLayer for ReshapeConfig {
    fn validate(&self, name: &str) -> Result<()> {
        let t = &self.target_shape;
        if t.is_empty() || t.iter().filter(|&&d| d == -1).count() > 1 || t.iter().any(|&d| d == 0 || d < -1) {
            return Err(invalid(format!(
                "Reshape '{name}': target_shape must hold positive sizes and at most one -1; got {t:?}"
            )));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?;
        let out = reshape_target(ctx.name, shape, &self.target_shape)?;
        Ok((Op::unary(Reshape { per_sample: shape.iter().product() }), out))
    }
}

#[derive(Clone, Debug)]
pub struct Reshape {
    pub per_sample: usize,
}

/// The output shape of `Reshape(target)` for `input_shape`; one entry may be `-1` (inferred).
/// Products are checked: a target whose size overflows is refused, never wrapped.
pub fn reshape_target(name: &str, input_shape: &[usize], target: &[i64]) -> Result<Vec<usize>> {
    let total: usize = input_shape.iter().product();
    let bad = || invalid(format!("Reshape '{name}': cannot reshape {input_shape:?} ({total} values) to {target:?}"));
    let known = target
        .iter()
        .filter(|&&d| d != -1)
        .try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        .filter(|&k| k > 0)
        .ok_or_else(bad)?;
    let inferred = if target.contains(&-1) {
        if !total.is_multiple_of(known) {
            return Err(bad());
        }
        total / known
    } else if known == total {
        0
    } else {
        return Err(bad());
    };
    Ok(target.iter().map(|&d| if d == -1 { inferred } else { d as usize }).collect())
}

impl LayerKernel for Reshape {
    fn forward(&self, p: ForwardPass<'_>) {
        let n = p.rows * self.per_sample;
        p.output[..n].copy_from_slice(&p.input[..n]);
    }

    fn backward(&self, p: BackwardPass<'_>) {
        if let Some(dx) = p.grad_in {
            let n = p.rows * self.per_sample;
            dx[..n].copy_from_slice(&p.grad_out[..n]);
        }
    }
}
