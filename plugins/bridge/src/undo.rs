//! The undo list of an ADD: every step that changes the host registers how to take it back, and
//! a failing ADD runs the list in reverse, so nothing is left half-applied.

use cni::Result;
use cni_net::Socket;
use cni_net::detach::Sockets;

type Step = Box<dyn FnOnce(&mut Socket, &mut Sockets) -> Result<()> + Send>;

/// Undo steps in the order their changes were made. Each step gets the host-namespace route
/// socket and the command's other sockets.
#[derive(Default)]
pub struct Undo {
    steps: Vec<(String, Step)>,
}

impl Undo {
    /// An empty list.
    pub fn new() -> Self {
        Undo::default()
    }

    /// Registers how to undo the change just made.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        step: impl FnOnce(&mut Socket, &mut Sockets) -> Result<()> + Send + 'static,
    ) {
        self.steps.push((what.into(), Box::new(step)));
    }

    /// Undoes everything, newest first. Failures are logged on stderr and do not stop the rest.
    pub fn rollback(self, host: &mut Socket, sockets: &mut Sockets) {
        for (what, step) in self.steps.into_iter().rev() {
            if let Err(e) = step(host, sockets) {
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

    #[test]
    fn rollback_runs_newest_first_and_past_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut undo = Undo::new();
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
        // A socket is needed to call the steps; opening one needs no privilege.
        let mut host = Socket::new().unwrap();
        undo.rollback(&mut host, &mut Sockets::in_place());
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
    }
}
