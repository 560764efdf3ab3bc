//! Netlink attribute (TLV) encoding and decoding for nf_tables and ctnetlink messages.
//!
//! nf_tables attributes are simple: a `struct nlattr` header (length, type) and the value, padded
//! to 4 bytes. Integers are big endian (the kernel reads them with `ntohl`/`be64_to_cpu`), strings
//! carry their NUL terminator, nested attributes carry `NLA_F_NESTED` like libmnl sets it.

/// `NLA_F_NESTED`: the attribute holds attributes.
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
/// Both flag bits of `nla_type` (`NLA_F_NESTED | NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = !(3 << 14);
use crate::transport::put_header;
pub(crate) use crate::transport::{NLMSG_HDRLEN, align4};
/// Size of `struct nfgenmsg`.
pub(crate) const NFGENMSG_LEN: usize = 4;

/// A growing buffer of netlink attributes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Attrs {
    pub(crate) buf: Vec<u8>,
}

impl Attrs {
    pub(crate) fn new() -> Self {
        Attrs::default()
    }

    /// Appends one attribute with a raw value, padded to 4 bytes.
    pub(crate) fn put(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    pub(crate) fn put_u32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    pub(crate) fn put_u64(&mut self, kind: u16, value: u64) {
        self.put(kind, &value.to_be_bytes());
    }

    /// A NUL-terminated string, as `mnl_attr_put_strz` writes it.
    pub(crate) fn put_str(&mut self, kind: u16, value: &str) {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        self.put(kind, &bytes);
    }

    /// A nested attribute whose content `fill` writes.
    pub(crate) fn nest(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        fill(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Appends one netfilter netlink message (`nlmsghdr` + `nfgenmsg` + attributes) to `out`.
pub(crate) fn put_message(
    out: &mut Vec<u8>,
    msg_type: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    put_header(out, len, msg_type, flags, seq);
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
    out.resize(align4(out.len()), 0);
}

/// Iterates over the attributes in `buf`, yielding `(type without flag bits, value)`. Stops at
/// the first malformed header instead of failing: dumps are parsed best effort.
pub(crate) fn attrs(buf: &[u8]) -> AttrIter<'_> {
    AttrIter { buf }
}

pub(crate) struct AttrIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.buf.get(..4)?;
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let value = &self.buf[4..len];
        self.buf = self.buf.get(align4(len)..).unwrap_or(&[]);
        Some((kind, value))
    }
}

/// Reads a big-endian u32 attribute value.
pub(crate) fn be_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// Reads a big-endian u64 attribute value.
pub(crate) fn be_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// Reads a string attribute value, dropping the NUL terminator.
pub(crate) fn string(value: &[u8]) -> String {
    let text = value.split(|b| *b == 0).next().unwrap_or(value);
    String::from_utf8_lossy(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attribute_carries_flag_and_total_length() {
        let mut a = Attrs::new();
        a.nest(4, |a| {
            a.put_u32(1, 7);
            a.put_str(2, "ab");
        });
        assert_eq!(
            a.buf,
            [
                20, 0, 4, 0x80, // nest: len 20, type 4 | NLA_F_NESTED
                8, 0, 1, 0, 0, 0, 0, 7, // u32 big endian
                7, 0, 2, 0, b'a', b'b', 0, 0, // "ab\0" + 1 byte padding
            ]
        );
        let outer: Vec<_> = attrs(&a.buf).collect();
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, 4);
        let inner: Vec<_> = attrs(outer[0].1).collect();
        assert_eq!(inner[0], (1, &[0, 0, 0, 7][..]));
        assert_eq!(string(inner[1].1), "ab");
    }

    #[test]
    fn attribute_iterator_stops_at_truncated_header() {
        let buf = [8, 0, 1, 0, 1, 2, 3, 4, 40, 0, 2, 0];
        let all: Vec<_> = attrs(&buf).collect();
        assert_eq!(all, vec![(1, &[1, 2, 3, 4][..])]);
    }
}
