//! Per-layer gradient norms over an epoch (the `GradientMonitor` callback's data).

/// Running sums of each layer's weight-gradient L2 norm (note 002 appendix A: the size of each
/// layer's gradient shows vanishing and exploding gradients).
#[derive(Clone, Debug, Default)]
pub struct GradMonitor {
    /// Layer name and the tensor indices it owns (tensors named `layer/...`).
    groups: Vec<(String, Vec<usize>)>,
    sums: Vec<f64>,
    steps: usize,
}

impl GradMonitor {
    pub fn new(params: &crate::params::ParamStore) -> Self {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, t) in params.tensors.iter().enumerate() {
            if t.role == crate::params::Role::NonTrainable {
                continue;
            }
            let layer = t.name.split('/').next().unwrap_or(&t.name).to_string();
            match groups.iter_mut().find(|(n, _)| *n == layer) {
                Some((_, v)) => v.push(i),
                None => groups.push((layer, vec![i])),
            }
        }
        let sums = vec![0.0; groups.len()];
        Self { groups, sums, steps: 0 }
    }

    pub(crate) fn record(&mut self, params: &crate::params::ParamStore) {
        for ((_, tensors), sum) in self.groups.iter().zip(self.sums.iter_mut()) {
            let sq: f64 = tensors
                .iter()
                .flat_map(|&i| params.grads[params.tensors[i].range()].iter())
                .map(|&g| (g as f64) * (g as f64))
                .sum();
            *sum += sq.sqrt();
        }
        self.steps += 1;
    }

    /// Mean norm per layer since the last call; resets the sums.
    pub fn take(&mut self) -> Vec<(String, f64)> {
        let n = self.steps.max(1) as f64;
        let out = self.groups.iter().zip(&self.sums).map(|((name, _), s)| (name.clone(), s / n)).collect();
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.steps = 0;
        out
    }
}
