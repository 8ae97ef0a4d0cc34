//! Residual block (He et al. 2016; note 004 "conexiones residuales"): `y = F(x) + S(x)` with `F`
//! a line of layers and `S` the identity or a projection (e.g. a 1x1 Conv2D when the shapes
//! change). The identity path gives the gradient a route around `F`, so deep stacks keep
//! learning where plain ones see their gradients vanish.
//!
//! `F` and `S` are graphs of the engine ([`Graph::build_nested`]), so they run and differentiate
//! exactly as a model's layers do. Backward: `dx = dF/dx^T g + dS/dx^T g` (`+ g` for the
//! identity).

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::graph::{width, Graph, GraphSpec, GraphWorkspace};
use crate::params::ParamStore;

use super::spec::{BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, LayerSpec, Op};

/// `Residual(layers, shortcut)` arguments: the block's layers in order, and the shortcut layer
/// (`None`: the identity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResidualConfig {
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub shortcut: Option<Box<LayerSpec>>,
}

impl BuildLayer for ResidualConfig {
    fn validate(&self, name: &str) -> Result<()> {
        if self.layers.is_empty() {
            return Err(invalid(format!("Residual '{name}': the block needs at least one layer")));
        }
        self.layers.iter().chain(self.shortcut.as_deref()).try_for_each(LayerSpec::validate)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?.to_vec();
        let (l, out) = Residual::build(ctx.name, &self.layers, self.shortcut.as_deref(), &shape, ctx.params, ctx.seed)?;
        Ok((Op::unary(l), out))
    }
}

#[derive(Clone, Debug)]
pub struct Residual {
    /// Boxed: a graph is large beside the other layers in the `Layer` enum.
    pub block: Box<Graph>,
    /// `None` for the identity shortcut.
    pub shortcut: Option<Box<Graph>>,
    out_width: usize,
    /// No fusion with a loss inside a block (one flag per node of each graph).
    unfused: Vec<bool>,
}

impl Residual {
    pub fn build(
        name: &str,
        layers: &[LayerSpec],
        shortcut: Option<&LayerSpec>,
        input_shape: &[usize],
        params: &mut ParamStore,
        seed: u64,
    ) -> Result<(Self, Vec<usize>)> {
        let line = |specs: Vec<LayerSpec>| GraphSpec::sequential(input_shape.to_vec(), specs);
        let block = Graph::build_nested(&line(layers.to_vec()), params, seed)?;
        let shortcut = shortcut.map(|s| Graph::build_nested(&line(vec![s.clone()]), params, seed)).transpose()?;
        let out = block.shape(block.outputs[0]).to_vec();
        let short = shortcut.as_ref().map_or(input_shape, |s| s.shape(s.outputs[0]));
        if out != short {
            return Err(invalid(format!(
                "Residual '{name}': the block outputs shape {out:?} but the shortcut gives {short:?}; \
                 pass a shortcut layer that projects to the block's shape (e.g. a 1x1 Conv2D or a Dense)"
            )));
        }
        let unfused = vec![false; layers.len().max(1)];
        Ok((Self { block: Box::new(block), shortcut: shortcut.map(Box::new), out_width: width(&out), unfused }, out))
    }
}

impl LayerKernel for Residual {
    /// Some layer of the block or the shortcut normalizes with batch statistics.
    fn uses_batch_statistics(&self) -> bool {
        let graphs = std::iter::once(&self.block).chain(self.shortcut.as_ref());
        graphs.flat_map(|g| g.layers.iter()).any(|l| matches!(&l.op, Op::Unary(u) if u.uses_batch_statistics()))
    }

    /// Branch workspaces: the block's, then the shortcut's.
    fn nested_workspaces(&self, _rows: usize) -> Vec<GraphWorkspace> {
        vec![GraphWorkspace::default(), GraphWorkspace::default()]
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let n = p.rows * self.out_width;
        let feeds = [p.input];
        let (wb, ws) = p.nested.split_at_mut(1);
        let mut run = |g: &Graph, w: &mut GraphWorkspace| {
            if p.keep {
                g.forward(p.params, w, &feeds, p.rows, p.training, p.rng)
            } else {
                g.infer(p.params, w, &feeds, p.rows)
            }
        };
        run(&self.block, &mut wb[0]);
        let f = self.block.tensor(&wb[0], &feeds, self.block.outputs[0], p.rows);
        let s = match &self.shortcut {
            None => &p.input[..n],
            Some(short) => {
                run(short, &mut ws[0]);
                short.tensor(&ws[0], &feeds, short.outputs[0], p.rows)
            }
        };
        p.output[..n].iter_mut().zip(f).zip(s).for_each(|((y, a), b)| *y = a + b);
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let (rows, n) = (p.rows, p.rows * self.out_width);
        let g = &p.grad_out[..n];
        let feeds = [p.input];
        let (wb, ws) = p.nested.split_at_mut(1);
        let branches =
            std::iter::once((&self.block, &mut wb[0])).chain(self.shortcut.as_ref().map(|s| (s, &mut ws[0])));
        let mut dx = p.grad_in;
        let mut first = true;
        for (graph, w) in branches {
            // Both branches receive `g` as the gradient of their output.
            graph.begin_backward(w);
            if let (_, Some((grad, _))) = graph.output_and_grad(w, &feeds, graph.outputs[0], rows) {
                grad[..n].copy_from_slice(g);
            }
            graph.backward(p.params, p.grads, w, &feeds, rows, &self.unfused, p.training);
            if let Some(dx) = dx.as_deref_mut() {
                let m = rows * width(&graph.inputs[0].shape);
                match graph.input_grad(w, 0, rows) {
                    Some(d) if first => dx[..m].copy_from_slice(d),
                    Some(d) => dx[..m].iter_mut().zip(d).for_each(|(x, d)| *x += d),
                    None if first => dx[..m].fill(0.0),
                    None => {}
                }
            }
            first = false;
        }
        if self.shortcut.is_none() {
            if let Some(dx) = dx {
                dx[..n].iter_mut().zip(g).for_each(|(d, g)| *d += g);
            }
        }
    }
}
