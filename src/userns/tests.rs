use super::*;

const SUBUID: &str = "\
# comment
alice:100000:65536
1001:300000:1000
bob:165536:65536
broken line
carol:x:10
alice:100000:65536
";

#[test]
fn ranges_by_name_and_by_uid() {
    let s = SubIds::parse(SUBUID);
    assert_eq!(
        s.ranges_of("alice", 1001),
        vec![(100000, 65536), (300000, 1000)]
    );
    assert_eq!(s.ranges_of("bob", 1002), vec![(165536, 65536)]);
    assert!(s.ranges_of("carol", 1003).is_empty());
    assert!(s.ranges_of("dave", 1004).is_empty());
}

#[test]
fn podman_mapping_from_ranges() {
    let m = Mapping::with_ranges(1001, 1001, &[(100000, 65536), (300000, 1000)], &[(5, 2)]);
    assert_eq!(m.uid_map(), "0 1001 1\n1 100000 65536\n65537 300000 1000\n");
    assert_eq!(m.gid_map(), "0 1001 1\n1 5 2\n");
    assert_eq!(
        m.uid_args(),
        [
            "0", "1001", "1", "1", "100000", "65536", "65537", "300000", "1000"
        ]
    );
    assert!(!m.is_single());
    assert_eq!(m.max_uid(), 66536);
    assert_eq!(m.host_uid(0), Some(1001));
    assert_eq!(m.host_uid(1000), Some(100999));
    assert_eq!(m.host_uid(65537), Some(300000));
    assert_eq!(m.host_uid(66537), None);
    assert!(m.maps_gid(2) && !m.maps_gid(3));
    assert_eq!(
        m.describe(),
        "uids 0→1001, 1-65536→100000-165535, 65537-66536→300000-300999, gids 0→1001, 1-2→5-6"
    );
}

#[test]
fn users_without_ranges_or_helpers_get_a_single_id() {
    let subuid = SubIds::parse(SUBUID);
    let none = SubIds::default();
    let helpers = || {
        (
            Some(PathBuf::from("/usr/bin/newuidmap")),
            Some(PathBuf::from("/usr/bin/newgidmap")),
        )
    };
    let (u, g) = helpers();
    let p = Plan::new("alice".into(), 1001, 1001, &subuid, &subuid, u, g);
    assert_eq!(p.single_because, None);
    assert!(p.warning().is_none());
    assert!(!p.mapping.is_single());

    let (u, g) = helpers();
    let p = Plan::new("alice".into(), 1001, 1001, &subuid, &none, u, g);
    assert_eq!(
        p.single_because,
        Some(Single::NoRanges {
            uids: false,
            gids: true
        })
    );
    assert_eq!(p.mapping, Mapping::single(1001, 1001));
    let (warning, hint) = p.warning().unwrap();
    assert!(
        warning.contains("no subordinate ids in /etc/subgid"),
        "{warning}"
    );
    assert!(warning.contains("unpacked as root"), "{warning}");
    assert!(hint.contains("usermod --add-subuids"), "{hint}");

    let p = Plan::new("alice".into(), 1001, 1001, &subuid, &subuid, None, None);
    assert_eq!(p.single_because, Some(Single::NoHelpers));
    assert!(p.warning().unwrap().1.contains("apt-get install uidmap"));
    assert!(p.mapping.is_single());
}

#[test]
fn the_initial_namespace_maps_every_id() {
    assert!(is_identity_map("         0          0 4294967295\n"));
    assert!(!is_identity_map("0 1001 1\n1 100000 65536\n"));
    assert!(!is_identity_map(""));
}

#[test]
fn maps_read_back_from_proc() {
    assert_eq!(
        parse_map("         0       1001          1\n         1     100000      65536\n"),
        Mapping::with_ranges(1001, 1001, &[(100000, 65536)], &[]).uids
    );
    assert!(parse_map("").is_empty());
}
