//! The undo list of an ADD: every step that changes the host registers how to take it back, and
//! a failing ADD runs the list in reverse, so nothing is left half-applied.

use cni::Result;

use crate::kernel::Kernel;

type Step<K> = Box<dyn FnOnce(&mut <K as Kernel>::Socket, &mut K) -> Result<()> + Send>;

/// Undo steps in the order their changes were made. Each step gets the host-namespace route
/// socket and the [`Kernel`] (with the command's other sockets).
pub struct Undo<K: Kernel> {
    steps: Vec<(String, Step<K>)>,
}

impl<K: Kernel> Undo<K> {
    /// An empty list.
    pub fn new() -> Self {
        Undo { steps: Vec::new() }
    }

    /// Registers how to undo the change just made.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        step: impl FnOnce(&mut K::Socket, &mut K) -> Result<()> + Send + 'static,
    ) {
        self.steps.push((what.into(), Box::new(step)));
    }

    /// Undoes everything, newest first. Failures are logged on stderr and do not stop the rest.
    pub fn rollback(self, host: &mut K::Socket, kernel: &mut K) {
        for (what, step) in self.steps.into_iter().rev() {
            if let Err(e) = step(host, kernel) {
                eprintln!("bridge: cannot undo {what} after a failed ADD: {e}");
            }
        }
    }

    /// The ADD succeeded: the changes stay.
    pub fn commit(self) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::fake::Fake;

    #[test]
    fn rollback_runs_newest_first_and_past_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut undo = Undo::<Fake>::new();
        for n in 0..3 {
            let log = log.clone();
            undo.push(format!("step {n}"), move |_, _| {
                log.lock().unwrap().push(n);
                if n == 1 {
                    return Err(cni::Error::internal("boom"));
                }
                Ok(())
            });
        }
        let mut kernel = Fake::new();
        let mut host = kernel.host_socket().unwrap();
        undo.rollback(&mut host, &mut kernel);
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
    }
}
