//! `resolvConf`: a resolv.conf file whose settings become the result's `dns`,
//! read the way Go host-local reads it.

use cni::Error;
use cni::result::Dns;
use std::path::Path;

/// Parses resolv.conf text: `nameserver` (one each), `domain` (the last
/// wins), `search` and `options` (all words, appended). Comments (`#`, `;`)
/// and lines without a value are skipped.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = Some(fields[1].to_string()),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

/// Reads and parses the file (code 5 when it cannot be read).
pub fn load(path: &Path) -> Result<Dns, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(format!("cannot read resolvConf {}", path.display())).with_details(e.to_string())
    })?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let dns = parse(
            "# comment\nnameserver 192.0.2.0\nnameserver 192.0.2.1\n; other\ndomain example.com\n\
             domain other.com\nsearch example.com example.net\nsearch a.b\noptions ndots:5 rotate\nbogus\nnameserver\n",
        );
        assert_eq!(dns.nameservers, ["192.0.2.0", "192.0.2.1"]);
        assert_eq!(dns.domain.as_deref(), Some("other.com"));
        assert_eq!(dns.search, ["example.com", "example.net", "a.b"]);
        assert_eq!(dns.options, ["ndots:5", "rotate"]);
    }

    #[test]
    fn missing_file_is_io_error() {
        assert_eq!(load(Path::new("/nonexistent/resolv.conf")).unwrap_err().code.0, 5);
    }
}
