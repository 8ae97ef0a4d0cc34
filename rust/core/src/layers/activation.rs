//! A standalone activation layer (`layers.Activation("softmax")`): no parameters, `a = act(x)`.

use crate::activation::Activation;

use super::BackwardPass;

#[derive(Clone, Debug)]
pub struct ActivationLayer {
    pub activation: Activation,
    /// Values per sample.
    pub per_sample: usize,
    /// Length of the last axis: softmax normalises over it.
    pub last_axis: usize,
}

impl ActivationLayer {
    pub fn forward(&self, input: &[f32], output: &mut [f32], rows: usize) {
        let n = rows * self.per_sample;
        output[..n].copy_from_slice(&input[..n]);
        self.activation.forward(&mut output[..n], self.last_axis);
    }

    pub fn backward(&self, p: BackwardPass<'_>) {
        let n = p.rows * self.per_sample;
        if let Some(dx) = p.grad_in {
            let dx = &mut dx[..n];
            dx.copy_from_slice(&p.grad_out[..n]);
            if !p.skip_activation {
                self.activation.backward(&p.input[..n], &p.output[..n], dx, self.last_axis);
            }
        }
    }
}
