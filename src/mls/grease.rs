//! GREASE detection (RFC 9420, section 13.5): whether a key package, leaf node, ratchet tree
//! or handshake message carries a GREASE value as a cipher suite, extension type, proposal
//! type or credential type. openmls 0.9.2 refuses such leaves and key packages
//! (`../shared/OPENMLS.md`), so the gateway answers them with their own code,
//! `GreaseUnsupported`, decided from the decoded values here rather than from openmls' error
//! text.
//!
//! The structures are read as RFC 9420 writes them, independently of openmls: KeyPackage
//! (section 10), LeafNode and Capabilities (section 7.2), the ratchet tree extension's
//! `optional<Node> ratchet_tree<V>` (section 12.4.3.3), and a PublicMessage's Proposal or
//! Commit (sections 6, 12.1, 12.4). A structure that does not decode carries no GREASE as far
//! as this module knows: openmls then refuses it with its own reason.

use mimi_wire::codec::read_vl_entry;

/// The GREASE values: `0x0A0A, 0x1A1A, ..., 0xEAEA` (RFC 9420, section 13.5).
pub fn is_grease_value(value: u16) -> bool {
    let [high, low] = value.to_be_bytes();
    high == low && low & 0x0f == 0x0a && high != 0xfa
}

/// Whether an MLSMessage (a KeyPackage, or a PublicMessage proposal or commit) carries GREASE.
pub fn message_has_grease(message: &[u8]) -> bool {
    fn scan(reader: &mut Reader<'_>) -> Option<bool> {
        let _version = reader.u16()?;
        match reader.u16()? {
            // mls_public_message
            1 => public_message(reader),
            // mls_key_package
            5 => key_package(reader),
            _ => Some(false),
        }
    }
    scan(&mut Reader(message)).unwrap_or(false)
}

/// Whether a ratchet tree (`optional<Node> ratchet_tree<V>`) has a leaf carrying GREASE.
pub fn tree_has_grease(tree: &[u8]) -> bool {
    fn scan(tree: &[u8]) -> Option<bool> {
        let mut nodes = Reader(Reader(tree).vl()?);
        let mut found = false;
        while !nodes.is_empty() {
            if nodes.u8()? == 0 {
                continue;
            }
            match nodes.u8()? {
                1 => found |= leaf_node(&mut nodes)?,
                2 => {
                    nodes.vl()?; // encryption_key
                    nodes.vl()?; // parent_hash
                    nodes.vl()?; // unmerged_leaves
                }
                _ => return None,
            }
        }
        Some(found)
    }
    scan(tree).unwrap_or(false)
}

/// A cursor over TLS-encoded bytes that never reads past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// One `opaque<V>` entry.
    fn vl(&mut self) -> Option<&'a [u8]> {
        let (entry, rest) = read_vl_entry(self.0)?;
        self.0 = rest;
        Some(entry)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a `<V>` vector of `uint16` values holds a GREASE value.
fn u16_list_has_grease(list: &[u8]) -> Option<bool> {
    if !list.len().is_multiple_of(2) {
        return None;
    }
    Some(
        list.chunks_exact(2)
            .any(|pair| is_grease_value(u16::from_be_bytes([pair[0], pair[1]]))),
    )
}

/// `Extension extensions<V>`, each `{ ExtensionType extension_type; opaque extension_data<V>; }`.
fn extensions(reader: &mut Reader<'_>) -> Option<bool> {
    let mut list = Reader(reader.vl()?);
    let mut found = false;
    while !list.is_empty() {
        found |= is_grease_value(list.u16()?);
        list.vl()?;
    }
    Some(found)
}

/// `KeyPackage` after the MLSMessage header (RFC 9420, section 10).
fn key_package(reader: &mut Reader<'_>) -> Option<bool> {
    let _version = reader.u16()?;
    let suite = reader.u16()?;
    reader.vl()?; // init_key
    let leaf = leaf_node(reader)?;
    let extensions = extensions(reader)?;
    Some(is_grease_value(suite) || leaf || extensions)
}

/// `LeafNode` (RFC 9420, section 7.2), signature included.
fn leaf_node(reader: &mut Reader<'_>) -> Option<bool> {
    reader.vl()?; // encryption_key
    reader.vl()?; // signature_key
    credential(reader)?;
    // Capabilities: versions, cipher_suites, extensions, proposals, credentials.
    reader.vl()?;
    let mut found = false;
    for _ in 0..4 {
        found |= u16_list_has_grease(reader.vl()?)?;
    }
    match reader.u8()? {
        1 => reader.skip(16)?, // key_package: Lifetime { uint64 not_before; uint64 not_after; }
        2 => {}                // update
        3 => {
            reader.vl()?; // commit: parent_hash
        }
        _ => return None,
    }
    found |= extensions(reader)?;
    reader.vl()?; // signature
    Some(found)
}

/// `Credential`: basic(1) `opaque identity<V>`, x509(2) `Certificate certificates<V>`; other
/// types have no encoding this reader knows.
fn credential(reader: &mut Reader<'_>) -> Option<()> {
    match reader.u16()? {
        1 | 2 => reader.vl().map(|_| ()),
        _ => None,
    }
}

/// `PublicMessage` (RFC 9420, section 6.2): the FramedContent's proposal or commit.
fn public_message(reader: &mut Reader<'_>) -> Option<bool> {
    reader.vl()?; // group_id
    reader.skip(8)?; // epoch
    match reader.u8()? {
        1 | 2 => reader.skip(4)?, // member / external: leaf or sender index
        3 | 4 => {}               // new_member_commit / new_member_proposal
        _ => return None,
    }
    reader.vl()?; // authenticated_data
    match reader.u8()? {
        2 => proposal(reader),
        3 => commit(reader),
        _ => Some(false),
    }
}

/// `Proposal` (RFC 9420, section 12.1): the types whose bodies can carry GREASE are read; a
/// proposal type that is itself GREASE counts.
fn proposal(reader: &mut Reader<'_>) -> Option<bool> {
    let proposal_type = reader.u16()?;
    match proposal_type {
        1 => key_package(reader),           // add
        2 => leaf_node(reader),             // update
        3 => reader.skip(4).map(|_| false), // remove
        4 => {
            // psk: PreSharedKeyID
            match reader.u8()? {
                1 => {
                    reader.vl()?;
                }
                2 => {
                    reader.u8()?;
                    reader.vl()?;
                    reader.skip(8)?;
                }
                _ => return None,
            }
            reader.vl().map(|_| false)
        }
        5 => {
            // reinit
            reader.vl()?;
            reader.u16()?;
            let suite = reader.u16()?;
            Some(is_grease_value(suite) | extensions(reader)?)
        }
        6 => reader.vl().map(|_| false), // external_init
        7 => extensions(reader),         // group_context_extensions
        other => Some(is_grease_value(other)),
    }
}

/// `Commit` (RFC 9420, section 12.4): proposals by value, then the UpdatePath's leaf.
fn commit(reader: &mut Reader<'_>) -> Option<bool> {
    let mut proposals = Reader(reader.vl()?);
    let mut found = false;
    while !proposals.is_empty() {
        match proposals.u8()? {
            1 => found |= proposal(&mut proposals)?,
            2 => {
                proposals.vl()?;
            }
            _ => return None,
        }
    }
    if reader.u8()? == 1 {
        found |= leaf_node(reader)?;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifteen_grease_values_and_no_others() {
        let grease: Vec<u16> = (0..=u16::MAX).filter(|v| is_grease_value(*v)).collect();
        let expected: Vec<u16> = (0..15u16).map(|i| 0x0a0a + i * 0x1010).collect();
        assert_eq!(grease, expected);
        assert_eq!(expected.last(), Some(&0xeaea));
    }

    /// A LeafNode written out from RFC 9420's struct: empty keys, a basic credential, the
    /// given capability lists (each of `uint16`s), a key-package source and extensions.
    fn leaf(suites: &[u16], extension_types: &[u16], leaf_extension: Option<u16>) -> Vec<u8> {
        let list = |values: &[u16]| {
            let mut out = vec![(values.len() * 2) as u8];
            for value in values {
                out.extend_from_slice(&value.to_be_bytes());
            }
            out
        };
        let mut out = vec![0x01, 0xaa, 0x01, 0xbb]; // encryption_key, signature_key
        out.extend_from_slice(&[0x00, 0x01, 0x01, b'a']); // basic credential "a"
        let mut capabilities = list(&[1]);
        capabilities.extend(list(suites));
        capabilities.extend(list(extension_types));
        capabilities.extend(list(&[]));
        capabilities.extend(list(&[1]));
        out.extend(capabilities); // a struct of five vectors, no length of its own
        out.push(1);
        out.extend_from_slice(&[0; 16]);
        match leaf_extension {
            Some(kind) => {
                out.push(3);
                out.extend_from_slice(&kind.to_be_bytes());
                out.push(0);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&[0x01, 0x55]); // signature
        out
    }

    fn key_package_message(leaf: &[u8]) -> Vec<u8> {
        let mut out = vec![0x00, 0x01, 0x00, 0x05, 0x00, 0x01, 0x00, 0x01, 0x01, 0xcc];
        out.extend_from_slice(leaf);
        out.extend_from_slice(&[0x00, 0x01, 0x66]); // no extensions, signature
        out
    }

    #[test]
    fn grease_in_capabilities_or_extensions_is_found() {
        let plain = key_package_message(&leaf(&[1], &[], None));
        assert!(!message_has_grease(&plain));
        for greased in [
            leaf(&[1, 0x3a3a], &[], None),
            leaf(&[1], &[0x0a0a], None),
            leaf(&[1], &[], Some(0xeaea)),
        ] {
            assert!(message_has_grease(&key_package_message(&greased)));
        }
    }

    #[test]
    fn a_tree_whose_leaf_has_grease_is_found() {
        let tree_of = |leaf: Vec<u8>| {
            let mut nodes = vec![1, 1];
            nodes.extend(leaf);
            let mut out = vec![nodes.len() as u8];
            out.extend(nodes);
            out
        };
        assert!(!tree_has_grease(&tree_of(leaf(&[1], &[], None))));
        assert!(tree_has_grease(&tree_of(leaf(&[1], &[0x5a5a], None))));
    }

    /// `name=hex` lines written by mls-rs 0.57 (`tests/vectors/`): with its `grease` feature
    /// on, and without.
    fn vector(file: &str, name: &str) -> Vec<u8> {
        let text = match file {
            "grease" => include_str!("../../tests/vectors/mls-rs-grease.txt"),
            _ => include_str!("../../tests/vectors/mls-rs-plain.txt"),
        };
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap();
        hex::decode(line.trim()).unwrap()
    }

    /// Another implementation's bytes: mls-rs (its `grease` feature on) puts GREASE in a key
    /// package's capabilities and extensions; the leaf its self-update commit puts in the path
    /// and the tree carries none, greased build or not. Those are read through to the end: a
    /// GREASE value put into their leaf's cipher suites is found.
    #[test]
    fn grease_from_mls_rs_is_found_and_its_plain_output_is_not() {
        let key_package = "key_package_mlsmessage";
        assert!(message_has_grease(&vector("grease", key_package)));
        assert!(!message_has_grease(&vector("plain", key_package)));
        let suites = [0x00, 0x02, 0x00, 0x07, 0x00, 0x01, 0x00, 0x03];
        for file in ["grease", "plain"] {
            for (name, scan) in [
                (
                    "commit_publicmessage",
                    message_has_grease as fn(&[u8]) -> bool,
                ),
                ("ratchet_tree", tree_has_grease),
            ] {
                let bytes = vector(file, name);
                assert!(!scan(&bytes), "{file} {name}");
                let at = bytes
                    .windows(suites.len())
                    .position(|window| window == suites)
                    .unwrap();
                let mut greased = bytes.clone();
                greased[at + 2..at + 4].copy_from_slice(&[0x4a, 0x4a]);
                assert!(scan(&greased), "{file} {name}, greased");
            }
        }
    }

    #[test]
    fn bytes_that_do_not_decode_carry_no_grease() {
        let mut cut = key_package_message(&leaf(&[0x3a3a], &[], None));
        cut.truncate(20);
        assert!(!message_has_grease(&cut));
        assert!(!message_has_grease(&[]));
        assert!(!tree_has_grease(&[0x7f]));
    }
}
