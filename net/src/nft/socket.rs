//! A blocking `NETLINK_NETFILTER` socket: sends nf_tables batches and checks every ACK, runs
//! dumps, and carries ctnetlink requests for [`crate::conntrack`].

use std::os::fd::AsRawFd;

use netlink_sys::protocols::NETLINK_NETFILTER;

use super::batch::{Batch, EncodedBatch, NLM_F_ACK, NLM_F_REQUEST};
use super::wire::{NFGENMSG_LEN, NLMSG_HDRLEN, put_message};
use crate::error::{Error, KernelError, Result};
use crate::netns::Netns;
use crate::transport::{ERESTART, Message, NLM_F_DUMP, NLMSG_ERROR, Transport, parse_error};

pub use crate::transport::{DUMP_RETRIES, RECV_TIMEOUT_SECS};

/// How often a batch is sent again when the kernel answers `EAGAIN`, `EINTR` or `ERESTART`:
/// a module being loaded or a concurrent transaction changed the generation under it. Nothing
/// was applied in that case, so sending it again is safe.
pub const BATCH_RETRIES: u32 = 3;

const SO_RCVBUF_SIZE: usize = 4 * 1024 * 1024;

/// A netfilter netlink socket in the network namespace of the thread that opened it, on the
/// crate's one netlink transport ([`crate::transport`]).
///
/// Dropping it closes it, which can make the caller wait for nf_tables' deferred cleanup; a
/// short-lived plugin hands it to a [`crate::detach::Releases`] instead.
#[derive(Debug)]
pub struct NetfilterSocket {
    transport: Transport,
}

/// A reply message copied out of the receive buffer: its type and its payload after `nfgenmsg`.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) msg_type: u16,
    pub(crate) family: u8,
    pub(crate) attrs: Vec<u8>,
}

impl NetfilterSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        Ok(NetfilterSocket {
            transport: Transport::open(NETLINK_NETFILTER, SO_RCVBUF_SIZE)?,
        })
    }

    /// Opens a socket inside `netns` (the calling thread enters it and comes back).
    pub fn new_in(netns: &Netns) -> Result<Self> {
        netns.run(NetfilterSocket::new)?
    }

    /// Gives up the socket's descriptor, for closing it elsewhere
    /// ([`crate::detach::Releases::keep`]).
    pub fn into_fd(self) -> std::os::fd::OwnedFd {
        self.transport.into_fd()
    }

    /// Applies `batch` as one transaction. Every message asks for an ACK; when one fails the
    /// error names that message ("add rule inet t c (message 3 of 5)") and carries the errno
    /// and the kernel's extended-ack text. The kernel rolls the whole batch back in that case.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply_once(batch) {
                Err(Error::Kernel(k))
                    if attempt < BATCH_RETRIES
                        && matches!(k.errno as i32, libc::EAGAIN | libc::EINTR | ERESTART) =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    fn apply_once(&mut self, batch: &Batch) -> Result<()> {
        let first = self.transport.next_seq();
        let encoded = batch.encode(first)?;
        // BEGIN took `first`; the messages and END follow it.
        self.transport.skip_seqs(encoded.descriptions.len() as u32 + 1);
        self.transport.ensure_send_buffer(encoded.bytes.len());
        self.transport.send(&encoded.bytes)?;
        self.collect_acks(&encoded)
    }

    /// Reads one ACK or error per message of the batch. Errors for the batch as a whole (a
    /// refused `BATCH_BEGIN`) end the wait at once.
    fn collect_acks(&mut self, enc: &EncodedBatch) -> Result<()> {
        let n = enc.descriptions.len() as u32;
        let begin = enc.first_seq;
        let mut answered = vec![false; n as usize];
        let mut remaining = n;
        let mut first_error: Option<(u32, i32, Option<String>)> = None;
        while remaining > 0 {
            self.transport.recv(&mut |msg| {
                if msg.msg_type != NLMSG_ERROR {
                    return Ok(());
                }
                let (code, ext) = parse_error(msg);
                let index = msg.seq.wrapping_sub(begin);
                if msg.seq == begin || index == n + 1 {
                    if code != 0 {
                        let what = if msg.seq == begin {
                            "the batch"
                        } else {
                            "the end of the batch"
                        };
                        return Err(kernel_error(-code, format!("{what} was refused"), ext));
                    }
                    return Ok(());
                }
                if index == 0 || index > n || answered[(index - 1) as usize] {
                    return Ok(()); // a stale answer to an earlier, abandoned request
                }
                answered[(index - 1) as usize] = true;
                remaining -= 1;
                if code != 0 && first_error.as_ref().is_none_or(|(i, _, _)| index < *i) {
                    first_error = Some((index, code, ext));
                }
                Ok(())
            })?;
        }
        match first_error {
            None => Ok(()),
            Some((index, code, ext)) => {
                let what = &enc.descriptions[(index - 1) as usize];
                Err(kernel_error(
                    -code,
                    format!("{what} (message {index} of {n} in the batch)"),
                    ext,
                ))
            }
        }
    }

    /// Sends one request (`msg_type` with `nfgenmsg` family and `res_id`) with `NLM_F_ACK`
    /// and returns the messages answered before the ACK.
    pub(crate) fn request(
        &mut self,
        msg_type: u16,
        flags: u16,
        family: u8,
        attrs: &[u8],
    ) -> Result<Vec<Reply>> {
        let seq = self.transport.next_seq();
        let mut out = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len());
        put_message(
            &mut out,
            msg_type,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            family,
            0,
            attrs,
        );
        let mut replies = Vec::new();
        self.transport.request(&out, seq, &mut |msg| {
            replies.push(to_reply(msg)?);
            Ok(())
        })?;
        Ok(replies)
    }

    /// Runs a dump (`NLM_F_DUMP`) and returns every message of it, restarting it when the
    /// kernel flags it as interrupted.
    pub(crate) fn dump(&mut self, msg_type: u16, family: u8, attrs: &[u8]) -> Result<Vec<Reply>> {
        self.transport.dump(
            &|seq| {
                let mut out = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len());
                put_message(
                    &mut out,
                    msg_type,
                    NLM_F_REQUEST | NLM_F_DUMP,
                    seq,
                    family,
                    0,
                    attrs,
                );
                out
            },
            &mut to_reply,
        )
    }
}

impl AsRawFd for NetfilterSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.transport.as_raw_fd()
    }
}

fn to_reply(msg: &Message<'_>) -> Result<Reply> {
    if msg.payload.len() < NFGENMSG_LEN {
        return Err(Error::UnexpectedReply(format!(
            "message type {:#x} without nfgenmsg",
            msg.msg_type
        )));
    }
    Ok(Reply {
        msg_type: msg.msg_type,
        family: msg.payload[0],
        attrs: msg.payload[NFGENMSG_LEN..].to_vec(),
    })
}

fn kernel_error(errno: i32, context: String, ext: Option<String>) -> Error {
    let message = match ext {
        Some(ext) => format!("{context}: {ext}"),
        None => context,
    };
    Error::Kernel(KernelError {
        errno: nix::errno::Errno::from_raw(errno),
        message: Some(message),
    })
}
