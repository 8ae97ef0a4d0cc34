//! The training objective of a batch: forward, every head's loss (weighted), backward and the
//! regularization penalties. The trainers (`trainer.rs`) build their steps from it.

use crate::graph::{width, Graph, GraphWorkspace};
use crate::network::Network;

use super::data::Dataset;
use super::heads::{Head, Running};

/// Each head's loss and metrics for a forward pass already run; when `train`, also writes the
/// gradient of `sum_k w_k L_k` into the output tensors (`L_k` the batch-mean loss of head `k`).
/// Returns `sum_k w_k L_k` summed over the batch's samples.
pub fn heads_loss(
    g: &Graph,
    ws: &mut GraphWorkspace,
    heads: &[Head],
    b: &Dataset<'_>,
    running: &mut Running,
    train: bool,
) -> f64 {
    let mut total = 0.0;
    for (k, head) in heads.iter().enumerate() {
        let Some(loss) = head.spec.loss else { continue };
        let r = g.outputs[k];
        let ow = width(g.shape(r));
        let scale = head.spec.weight / b.rows as f32;
        let sum = if train {
            let (out, grad) = g.output_and_grad(ws, &b.x, r, b.rows);
            match grad {
                Some((grad, accumulate)) => {
                    let s = loss.evaluate(out, b.y[k], b.weights_of(k), b.rows, ow, head.fused, scale, Some(grad));
                    if accumulate {
                        g.add_output_grad(ws, r, b.rows);
                    }
                    s
                }
                None => loss.evaluate(out, b.y[k], b.weights_of(k), b.rows, ow, head.fused, scale, None),
            }
        } else {
            loss.evaluate(g.tensor(ws, &b.x, r, b.rows), b.y[k], b.weights_of(k), b.rows, ow, head.fused, 1.0, None)
        };
        let out = g.tensor(ws, &b.x, r, b.rows);
        running.add_head(k, head, sum, out, b.y[k], b.rows, ow);
        total += head.spec.weight as f64 * sum;
    }
    total
}

/// Forward, loss and backward: leaves the gradient of the batch objective (weighted mean losses
/// plus regularization penalties) in `net.params.grads`; returns that objective.
pub fn forward_backward(
    net: &mut Network,
    ws: &mut GraphWorkspace,
    heads: &[Head],
    fused_nodes: &[bool],
    b: &Dataset<'_>,
    running: &mut Running,
) -> f64 {
    net.forward(ws, &b.x, b.rows, true);
    net.graph.begin_backward(ws);
    let sum = heads_loss(&net.graph, ws, heads, b, running, true);
    net.backward(ws, &b.x, b.rows, fused_nodes);
    net.params.zero_frozen_grads();
    let penalty = net.params.apply_regularizers();
    running.end_batch(b.rows, penalty);
    // The objective whose gradient was just computed.
    sum / b.rows as f64 + penalty
}
