//! GREASE detection (RFC 9420, section 13.5): where a key package, leaf node, ratchet tree
//! or handshake message carries a GREASE value. Values in capabilities (cipher suites,
//! extension, proposal and credential types a client *advertises*) are what RFC 9420 asks
//! every implementation to tolerate, and openmls 0.9.2 does. A GREASE value *used* (an
//! extension of a GREASE type in an extension list, a proposal of a GREASE type, a GREASE
//! cipher suite of the structure itself) makes openmls 0.9.2 refuse the structure
//! (`../shared/OPENMLS.md`, openmls issue #2156), so the gateway answers that refusal with
//! its own code, `GreaseUnsupported`, decided from the decoded values here rather than from
//! openmls' error text.
//!
//! The structures are read as RFC 9420 writes them, independently of openmls: KeyPackage
//! (section 10), LeafNode and Capabilities (section 7.2), the ratchet tree extension's
//! `optional<Node> ratchet_tree<V>` (section 12.4.3.3), and a PublicMessage's Proposal or
//! Commit (sections 6, 12.1, 12.4). Reading stops where the bytes do not decode (or at a
//! proposal type it cannot read past); what was found until then stands.

use mimi_wire::codec::read_vl_entry;

/// The GREASE values: `0x0A0A, 0x1A1A, ..., 0xEAEA` (RFC 9420, section 13.5).
pub fn is_grease_value(value: u16) -> bool {
    let [high, low] = value.to_be_bytes();
    high == low && low & 0x0f == 0x0a && high != 0xfa
}

/// Where GREASE values were found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grease {
    /// In capability lists: to be tolerated.
    pub advertised: bool,
    /// As an extension type, proposal type or cipher suite actually used.
    pub used: bool,
}

/// GREASE in an MLSMessage: a KeyPackage, or a PublicMessage proposal or commit.
pub fn in_message(message: &[u8]) -> Grease {
    let mut found = Grease::default();
    let mut reader = Reader(message);
    let _ = (|| -> Option<()> {
        let _version = reader.u16()?;
        match reader.u16()? {
            // mls_public_message
            1 => public_message(&mut reader, &mut found),
            // mls_key_package
            5 => key_package(&mut reader, &mut found),
            _ => Some(()),
        }
    })();
    found
}

/// GREASE in the leaves of a ratchet tree (`optional<Node> ratchet_tree<V>`).
pub fn in_tree(tree: &[u8]) -> Grease {
    let mut found = Grease::default();
    let _ = (|| -> Option<()> {
        let mut nodes = Reader(Reader(tree).vl()?);
        while !nodes.is_empty() {
            if nodes.u8()? == 0 {
                continue;
            }
            match nodes.u8()? {
                1 => leaf_node(&mut nodes, &mut found)?,
                2 => {
                    nodes.vl()?; // encryption_key
                    nodes.vl()?; // parent_hash
                    nodes.vl()?; // unmerged_leaves
                }
                _ => return None,
            }
        }
        Some(())
    })();
    found
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
fn extensions(reader: &mut Reader<'_>, found: &mut Grease) -> Option<()> {
    let mut list = Reader(reader.vl()?);
    while !list.is_empty() {
        found.used |= is_grease_value(list.u16()?);
        list.vl()?;
    }
    Some(())
}

/// `KeyPackage` (RFC 9420, section 10), signature included.
fn key_package(reader: &mut Reader<'_>, found: &mut Grease) -> Option<()> {
    let _version = reader.u16()?;
    found.used |= is_grease_value(reader.u16()?); // cipher_suite
    reader.vl()?; // init_key
    leaf_node(reader, found)?;
    extensions(reader, found)?;
    reader.vl()?; // signature
    Some(())
}

/// `LeafNode` (RFC 9420, section 7.2), signature included.
fn leaf_node(reader: &mut Reader<'_>, found: &mut Grease) -> Option<()> {
    reader.vl()?; // encryption_key
    reader.vl()?; // signature_key
    credential(reader)?;
    // Capabilities: versions, then cipher_suites, extensions, proposals, credentials.
    reader.vl()?;
    for _ in 0..4 {
        found.advertised |= u16_list_has_grease(reader.vl()?)?;
    }
    match reader.u8()? {
        1 => reader.skip(16)?, // key_package: Lifetime { uint64 not_before; uint64 not_after; }
        2 => {}                // update
        3 => {
            reader.vl()?; // commit: parent_hash
        }
        _ => return None,
    }
    extensions(reader, found)?;
    reader.vl()?; // signature
    Some(())
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
fn public_message(reader: &mut Reader<'_>, found: &mut Grease) -> Option<()> {
    reader.vl()?; // group_id
    reader.skip(8)?; // epoch
    match reader.u8()? {
        1 | 2 => reader.skip(4)?, // member / external: leaf or sender index
        3 | 4 => {}               // new_member_commit / new_member_proposal
        _ => return None,
    }
    reader.vl()?; // authenticated_data
    match reader.u8()? {
        2 => proposal(reader, found),
        3 => commit(reader, found),
        _ => Some(()),
    }
}

/// `Proposal` (RFC 9420, section 12.1). A proposal of another type cannot be read past: a
/// GREASE one counts as used, and reading stops.
fn proposal(reader: &mut Reader<'_>, found: &mut Grease) -> Option<()> {
    match reader.u16()? {
        1 => key_package(reader, found), // add
        2 => leaf_node(reader, found),   // update
        3 => reader.skip(4),             // remove
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
            reader.vl().map(|_| ())
        }
        5 => {
            // reinit
            reader.vl()?;
            reader.u16()?;
            found.used |= is_grease_value(reader.u16()?);
            extensions(reader, found)
        }
        6 => reader.vl().map(|_| ()),   // external_init
        7 => extensions(reader, found), // group_context_extensions
        other => {
            found.used |= is_grease_value(other);
            None
        }
    }
}

/// `Commit` (RFC 9420, section 12.4): proposals by value, then the UpdatePath's leaf.
fn commit(reader: &mut Reader<'_>, found: &mut Grease) -> Option<()> {
    let mut proposals = Reader(reader.vl()?);
    while !proposals.is_empty() {
        match proposals.u8()? {
            1 => proposal(&mut proposals, found)?,
            2 => {
                proposals.vl()?;
            }
            _ => return None,
        }
    }
    if reader.u8()? == 1 {
        leaf_node(reader, found)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Grease = Grease {
        advertised: false,
        used: false,
    };
    const ADVERTISED: Grease = Grease {
        advertised: true,
        used: false,
    };
    const USED: Grease = Grease {
        advertised: false,
        used: true,
    };

    #[test]
    fn the_fifteen_grease_values_and_no_others() {
        let grease: Vec<u16> = (0..=u16::MAX).filter(|v| is_grease_value(*v)).collect();
        let expected: Vec<u16> = (0..15u16).map(|i| 0x0a0a + i * 0x1010).collect();
        assert_eq!(grease, expected);
        assert_eq!(expected.last(), Some(&0xeaea));
    }

    /// `<V>` of `uint16`s, for lists shorter than 64 bytes.
    fn list(values: &[u16]) -> Vec<u8> {
        let mut out = vec![(values.len() * 2) as u8];
        for value in values {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// A LeafNode written out from RFC 9420's struct: empty keys, a basic credential, the
    /// given capability lists, a key-package source and at most one (empty) extension.
    fn leaf(suites: &[u16], extension_types: &[u16], leaf_extension: Option<u16>) -> Vec<u8> {
        let mut out = vec![0x01, 0xaa, 0x01, 0xbb]; // encryption_key, signature_key
        out.extend_from_slice(&[0x00, 0x01, 0x01, b'a']); // basic credential "a"
        // Capabilities: a struct of five vectors, no length of its own.
        out.extend(list(&[1]));
        out.extend(list(suites));
        out.extend(list(extension_types));
        out.extend(list(&[]));
        out.extend(list(&[1]));
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

    /// A KeyPackage (without the MLSMessage header) holding `leaf`.
    fn key_package(leaf: &[u8]) -> Vec<u8> {
        let mut out = vec![0x00, 0x01, 0x00, 0x01, 0x01, 0xcc];
        out.extend_from_slice(leaf);
        out.extend_from_slice(&[0x00, 0x01, 0x66]); // no extensions, signature
        out
    }

    fn key_package_message(leaf: &[u8]) -> Vec<u8> {
        [&[0x00, 0x01, 0x00, 0x05][..], &key_package(leaf)].concat()
    }

    /// A PublicMessage commit of member 0 for epoch 0 committing `proposals` by value, then
    /// an UpdatePath whose leaf is `path_leaf` (only the leaf: what follows is never read).
    fn commit_message(proposals: &[Vec<u8>], path_leaf: &[u8]) -> Vec<u8> {
        let mut body: Vec<u8> = Vec::new();
        for proposal in proposals {
            body.push(1); // ProposalOrRef: proposal
            body.extend_from_slice(proposal);
        }
        assert!(body.len() < 16384);
        // The shortest length prefix, as RFC 9420 requires.
        let prefix = if body.len() < 64 {
            vec![body.len() as u8]
        } else {
            (0x4000 | body.len() as u16).to_be_bytes().to_vec()
        };
        let mut out = vec![0x00, 0x01, 0x00, 0x01]; // mls10, mls_public_message
        out.extend_from_slice(&[0x01, 0x67]); // group_id "g"
        out.extend_from_slice(&[0; 8]); // epoch
        out.extend_from_slice(&[1, 0, 0, 0, 0]); // sender: member 0
        out.push(0); // authenticated_data
        out.push(3); // content_type: commit
        out.extend(prefix);
        out.extend(body);
        out.push(1); // path present
        out.extend_from_slice(path_leaf);
        out
    }

    fn add(leaf: &[u8]) -> Vec<u8> {
        [&[0x00, 0x01][..], &key_package(leaf)].concat()
    }

    #[test]
    fn capabilities_are_advertised_extensions_and_suites_used() {
        assert_eq!(
            in_message(&key_package_message(&leaf(&[1], &[], None))),
            NONE
        );
        assert_eq!(
            in_message(&key_package_message(&leaf(&[1, 0x3a3a], &[], None))),
            ADVERTISED
        );
        assert_eq!(
            in_message(&key_package_message(&leaf(&[1], &[0x0a0a], None))),
            ADVERTISED
        );
        assert_eq!(
            in_message(&key_package_message(&leaf(&[1], &[], Some(0xeaea)))),
            USED
        );
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
        assert_eq!(in_tree(&tree_of(leaf(&[1], &[], None))), NONE);
        assert_eq!(in_tree(&tree_of(leaf(&[1], &[0x5a5a], None))), ADVERTISED);
        assert_eq!(in_tree(&tree_of(leaf(&[1], &[], Some(0x5a5a)))), USED);
    }

    /// Every proposal by value is read through (a KeyPackage's signature included), so the
    /// path leaf after them is reached.
    #[test]
    fn a_commit_is_read_through_its_proposals_to_the_path() {
        let plain = leaf(&[1], &[], None);
        let remove = vec![0x00, 0x03, 0, 0, 0, 1];
        let psk = [&[0x00, 0x04, 1, 0x01, 0x70][..], &[0x01, 0x6e]].concat();
        let gce = vec![0x00, 0x07, 0x00];
        let proposals = vec![add(&plain), remove, psk, gce, add(&plain)];
        assert_eq!(in_message(&commit_message(&proposals, &plain)), NONE);
        let greased_path = leaf(&[1], &[], Some(0x2a2a));
        assert_eq!(in_message(&commit_message(&proposals, &greased_path)), USED);
        let greased_add = vec![add(&plain), add(&leaf(&[1], &[], Some(0x9a9a)))];
        assert_eq!(in_message(&commit_message(&greased_add, &plain)), USED);
        // A GroupContextExtensions proposal adding a GREASE extension.
        let gce = vec![0x00, 0x07, 0x03, 0x4a, 0x4a, 0x00];
        assert_eq!(in_message(&commit_message(&[gce], &plain)), USED);
        // A proposal of a GREASE type is used, and nothing past it can be read.
        let unknown = vec![0x6a, 0x6a, 0xff];
        assert_eq!(in_message(&commit_message(&[unknown], &plain)), USED);
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

    /// Another implementation's bytes: mls-rs (its `grease` feature on) advertises GREASE in
    /// a key package's capabilities and uses it as an extension of the key package; the leaf
    /// its self-update commit puts in the path and the tree carries none, greased build or
    /// not. Those are read through to the end: a GREASE value put into their leaf's cipher
    /// suites is found.
    #[test]
    fn grease_from_mls_rs_is_found_and_its_plain_output_is_not() {
        let key_package = "key_package_mlsmessage";
        assert_eq!(
            in_message(&vector("grease", key_package)),
            Grease {
                advertised: true,
                used: true
            }
        );
        assert_eq!(in_message(&vector("plain", key_package)), NONE);
        let suites = [0x00, 0x02, 0x00, 0x07, 0x00, 0x01, 0x00, 0x03];
        for file in ["grease", "plain"] {
            for (name, scan) in [
                ("commit_publicmessage", in_message as fn(&[u8]) -> Grease),
                ("ratchet_tree", in_tree),
            ] {
                let bytes = vector(file, name);
                assert_eq!(scan(&bytes), NONE, "{file} {name}");
                let at = bytes
                    .windows(suites.len())
                    .position(|window| window == suites)
                    .unwrap();
                let mut greased = bytes.clone();
                greased[at + 2..at + 4].copy_from_slice(&[0x4a, 0x4a]);
                assert_eq!(scan(&greased), ADVERTISED, "{file} {name}, greased");
            }
        }
    }

    #[test]
    fn bytes_that_do_not_decode_carry_no_grease() {
        let mut cut = key_package_message(&leaf(&[1], &[], Some(0x3a3a)));
        cut.truncate(20);
        assert_eq!(in_message(&cut), NONE);
        assert_eq!(in_message(&[]), NONE);
        assert_eq!(in_tree(&[0x7f]), NONE);
    }
}
