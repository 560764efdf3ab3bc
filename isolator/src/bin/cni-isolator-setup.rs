//! `cni-isolator-setup`: the single-threaded helper that the isolator runs to
//! do the work that needs the container's mount and UTS namespaces (binding
//! hosts, hostname and resolv.conf; setting the hostname). See
//! `cni_isolator::setup` for the flags and what they do.

use cni_isolator::setup::{SetupFlags, execute};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: cni-isolator-setup --pid=PID [--hostname=H] [--rootfs=DIR] [--etc-hosts-path=F] \
             [--etc-hostname-path=F] [--etc-resolv-conf=F] [--bind-host-files] [--bind-readonly]\n\n\
             Joins the mount namespace of PID, marks / as a recursive slave, binds the given files over \
             /etc/hosts, /etc/hostname and /etc/resolv.conf (with --bind-host-files) and/or under \
             ROOTFS/etc, then sets the hostname in PID's UTS namespace. Run by the cni-isolator library."
        );
        return;
    }
    let flags = match SetupFlags::from_args(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cni-isolator-setup: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = execute(&flags) {
        eprintln!("cni-isolator-setup: {e}");
        std::process::exit(1);
    }
}
