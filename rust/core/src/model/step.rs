//! One training step: forward, every head's loss, backward, regularizers, update. Full-batch
//! L-BFGS drives the same forward/backward through its line search instead of one update.

use crate::graph::GraphWorkspace;
use crate::network::Network;
use crate::optim::{Sgd, State};

use super::data::{first_non_finite, Dataset};
use super::heads::{Compiled, Running};
use super::monitor::GradMonitor;

/// Forward, loss, backward and update for one batch.
///
/// With a `guard` buffer (TerminateOnNaN), a batch whose loss is not finite is not applied, and
/// an update that makes any weight non-finite is undone from the copy taken before it: the model
/// keeps its last finite weights and `false` is returned.
pub fn train_step(
    net: &mut Network,
    ws: &mut GraphWorkspace,
    c: &mut Compiled,
    b: &Dataset<'_>,
    running: &mut Running,
    guard: Option<&mut Vec<f32>>,
    monitor: Option<&mut GradMonitor>,
) -> bool {
    let loss = forward_backward(net, ws, c, b, running);
    let p = &mut net.params;
    if let Some(m) = monitor {
        // Raw gradients, before any clipping the optimizer applies.
        m.record(p);
    }
    match guard {
        None => {
            c.optimizer.step(&mut p.values, &mut p.grads, &p.tensors);
            true
        }
        Some(backup) => {
            if !loss.is_finite() {
                return false;
            }
            backup.clear();
            backup.extend_from_slice(&p.values);
            c.optimizer.step(&mut p.values, &mut p.grads, &p.tensors);
            if first_non_finite(&p.values).is_some() {
                p.values.copy_from_slice(backup);
                return false;
            }
            true
        }
    }
}

/// Each head's loss and metrics for a forward pass already run; when `train`, also writes the
/// gradient of `sum_k w_k L_k` into the output tensors (`L_k` the batch-mean loss of head `k`).
/// Returns `sum_k w_k L_k` summed over the batch's samples.
pub fn heads_loss(
    net: &Network,
    ws: &mut GraphWorkspace,
    c: &Compiled,
    b: &Dataset<'_>,
    running: &mut Running,
    train: bool,
) -> f64 {
    let g = &net.graph;
    let mut total = 0.0;
    for (k, head) in c.heads.iter().enumerate() {
        let Some(loss) = head.spec.loss else { continue };
        let r = g.outputs[k];
        let ow = net.output_width(k);
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
    c: &Compiled,
    b: &Dataset<'_>,
    running: &mut Running,
) -> f64 {
    net.forward(ws, &b.x, b.rows, true);
    net.graph.begin_backward(ws);
    let sum = heads_loss(net, ws, c, b, running, true);
    net.backward(ws, &b.x, b.rows, &c.fused_nodes);
    net.params.zero_frozen_grads();
    let penalty = net.params.apply_regularizers();
    running.end_batch(b.rows, penalty);
    // The objective whose gradient was just computed.
    sum / b.rows as f64 + penalty
}

/// One full-batch L-BFGS call (up to `max_iter` iterations with line search) on `data`, then
/// the loss and metrics at the final weights into `running`.
pub fn lbfgs_step(
    net: &mut Network,
    ws: &mut GraphWorkspace,
    c: &mut Compiled,
    data: &Dataset<'_>,
    running: &mut Running,
) {
    let lr = c.optimizer.current_learning_rate();
    let State::Lbfgs(mut lbfgs) = std::mem::replace(
        &mut c.optimizer.state,
        State::Sgd(Sgd { momentum: 0.0, nesterov: false, velocity: Vec::new() }),
    ) else {
        unreachable!("called for L-BFGS only")
    };
    let mut w = net.params.values.clone();
    let mut g = vec![0.0f32; w.len()];
    let cc: &Compiled = c;
    lbfgs.run(lr, &mut w, &mut g, |w, g| {
        net.params.values.copy_from_slice(w);
        // The same dropout masks at every point of the line search.
        net.reset_noise();
        let loss = forward_backward(net, ws, cc, data, &mut Running::new(&cc.heads));
        g.copy_from_slice(&net.params.grads);
        loss
    });
    net.params.values.copy_from_slice(&w);
    // Loss and metrics at the final weights.
    net.forward(ws, &data.x, data.rows, false);
    heads_loss(net, ws, c, data, running, false);
    running.end_batch(data.rows, net.params.penalty());
    c.optimizer.state = State::Lbfgs(lbfgs);
    c.optimizer.iterations += 1;
    c.optimizer.last_learning_rate = lr;
}
