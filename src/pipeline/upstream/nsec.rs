//! What one NSEC record proves (RFC 4035 §5.4, RFC 4592, RFC 6840 §4.1): that a name does
//! not exist, and that a wildcard's answer came from the closest wildcard there is. The
//! record is taken as already verified; these are the checks on its owner, its next name
//! and its types, in the canonical order of names (RFC 4034 §6.1, hickory's `Ord` on
//! `Name`), as unbound's `val_nsec_proves_name_error` and
//! `val_nsec_proves_positive_wildcard` make them.

use hickory_resolver::proto::dnssec::rdata::NSEC;
use hickory_resolver::proto::rr::Name;

/// Whether the NSEC at `owner` proves that `name` does not exist: `name` sorts strictly
/// between the owner and the next name (after the owner and below the apex, for the
/// zone's last NSEC, whose next name is the apex), and the owner is not a delegation or a
/// DNAME above `name` (such a record speaks only of the parent's side of the cut).
pub fn proves_no_name(owner: &Name, nsec: &NSEC, name: &Name) -> bool {
    if owner == name {
        return false;
    }
    if owner.zone_of(name) && nsec.is_ancestor_delegation() {
        return false;
    }
    let next = nsec.next_domain_name();
    if owner < next {
        owner < name && name < next
    } else {
        // The zone's last NSEC: its next name is the apex.
        owner < name && next.zone_of(name)
    }
}

/// Whether the NSEC at `owner` proves that `name`, answered by the expansion of the
/// wildcard whose parent is `encloser`, was answered rightly: `name` does not exist, and
/// no name closer to it than `encloser` does (so `*.encloser` is the wildcard to use).
pub fn proves_expansion(owner: &Name, nsec: &NSEC, name: &Name, encloser: &Name) -> bool {
    if !proves_no_name(owner, nsec, name) {
        return false;
    }
    let closest = shared_labels(name, owner).max(shared_labels(name, nsec.next_domain_name()));
    closest == usize::from(encloser.num_labels()) && encloser.zone_of(name)
}

/// Whether one of `nsecs` (owner, record, signer; each verified) proves the expansion of
/// the wildcard whose parent is `encloser` for `name`, as [`proves_expansion`] does, and is
/// of `signer`, the zone that signed the expansion: another zone's NSEC proves nothing of
/// it.
pub fn expansion_proven<'a>(
    nsecs: impl IntoIterator<Item = (&'a Name, &'a NSEC, &'a Name)>,
    name: &Name,
    encloser: &Name,
    signer: &Name,
) -> bool {
    nsecs.into_iter().any(|(owner, n, by)| {
        by == signer && signer.zone_of(owner) && proves_expansion(owner, n, name, encloser)
    })
}

/// How many labels `a` and `b` share from the root down.
fn shared_labels(a: &Name, b: &Name) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::RecordType;
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn nsec(next: &str, types: &[RecordType]) -> NSEC {
        NSEC::new(n(next), types.iter().copied())
    }

    #[test]
    fn a_name_between_owner_and_next_does_not_exist() {
        let rec = nsec("d.example.", &[RecordType::A]);
        let owner = n("b.example.");
        assert!(proves_no_name(&owner, &rec, &n("c.example.")));
        assert!(
            proves_no_name(&owner, &rec, &n("x.b.example.")),
            "below the owner"
        );
        assert!(
            !proves_no_name(&owner, &rec, &n("b.example.")),
            "the owner exists"
        );
        assert!(
            !proves_no_name(&owner, &rec, &n("d.example.")),
            "the next exists"
        );
        assert!(!proves_no_name(&owner, &rec, &n("e.example.")));
        assert!(!proves_no_name(&owner, &rec, &n("a.example.")));
    }

    #[test]
    fn the_last_nsec_covers_up_to_the_end_of_its_zone_only() {
        let rec = nsec("example.", &[RecordType::A]);
        let owner = n("m.example.");
        assert!(proves_no_name(&owner, &rec, &n("z.example.")));
        assert!(!proves_no_name(&owner, &rec, &n("a.example.")));
        assert!(
            !proves_no_name(&owner, &rec, &n("z.other.")),
            "outside the zone"
        );
    }

    #[test]
    fn a_delegation_proves_nothing_below_it() {
        let owner = n("sub.example.");
        let cut = nsec("z.example.", &[RecordType::NS]);
        assert!(!proves_no_name(&owner, &cut, &n("x.sub.example.")));
        let apex = nsec("z.example.", &[RecordType::NS, RecordType::SOA]);
        assert!(proves_no_name(&owner, &apex, &n("x.sub.example.")));
        let dname = nsec("z.example.", &[RecordType::DNAME]);
        assert!(!proves_no_name(&owner, &dname, &n("x.sub.example.")));
    }

    #[test]
    fn an_expansion_needs_the_closest_wildcard() {
        // The zone: example., *.example., b.example. (with records), z.example.
        let owner = n("*.example.");
        let rec = nsec("b.example.", &[RecordType::A]);
        assert!(proves_expansion(
            &owner,
            &rec,
            &n("a.example."),
            &n("example.")
        ));
        // a.b.example. exists under b.example.: its wildcard is *.b.example., not
        // *.example.; the NSEC that covers it is b.example.'s.
        let owner_b = n("b.example.");
        let rec_b = nsec("z.example.", &[RecordType::A]);
        assert!(!proves_expansion(
            &owner_b,
            &rec_b,
            &n("a.b.example."),
            &n("example.")
        ));
        assert!(proves_expansion(
            &owner_b,
            &rec_b,
            &n("a.b.example."),
            &n("b.example.")
        ));
        // An NSEC that does not cover the name proves nothing.
        assert!(!proves_expansion(
            &owner,
            &rec,
            &n("c.example."),
            &n("example.")
        ));
    }
}
