use super::*;
use crate::testkit;
use crate::wire::l4::SYN;
use proptest::prelude::*;
use std::net::IpAddr;

/// A node's services: one nat service over two ports, built from its config.
fn services() -> crate::services::Services {
    let cfg = tandem_config::Config::from_toml(
        "[node]\nid = 1\n[eal]\nargs = []\n\
         [[port]]\nname = \"front\"\ndevargs = \"net_null0\"\nipv4 = \"10.0.0.1/24\"\n\
         [[port]]\nname = \"back\"\ndevargs = \"net_null1\"\nipv4 = \"10.1.0.1/24\"\n\
         [[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n\
         mode = \"nat\"\n[[service.backend]]\nname = \"a\"\naddress = \"10.1.0.11\"\n\
         port = 8080\npaths = [{ port = \"back\" }]\n",
    )
    .unwrap();
    crate::services::Services::from_config(&cfg, &[[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    testkit::tcp([2; 6], [4; 6], ip(src), sport, ip(dst), dport, SYN, b"")
}

fn matches(filter: &str, frame: &[u8]) -> bool {
    Filter::parse(filter)
        .unwrap()
        .matches(&Seen::of(frame, Some(6070)))
}

#[test]
fn filters_parse_as_written_and_bare_words_name_their_term() {
    let f = syn("198.51.100.7", 40000, "192.0.2.10", 80);
    assert!(matches("host 198.51.100.7", &f));
    assert!(matches("198.51.100.7", &f));
    assert!(matches("host 192.0.2.10 and port 80 and proto tcp", &f));
    assert!(matches("vip 192.0.2.10 and 40000 and tcp", &f));
    assert!(!matches("host 198.51.100.8", &f));
    assert!(!matches("host 198.51.100.7 and proto udp", &f));
    assert!(!matches("port 81", &f));
    assert!(!matches("host ::1", &f), "another family never matches");
    let v6 = syn("2001:db8::7", 40000, "2001:db8::10", 80);
    assert!(matches("host 2001:db8::7 and port 80", &v6));
    assert_eq!(
        Filter::parse("host  198.51.100.7   and port 80")
            .unwrap()
            .text(),
        "host 198.51.100.7 and port 80"
    );
}

#[test]
fn a_bad_filter_names_the_word_and_why() {
    let err = |s: &str| Filter::parse(s).unwrap_err().0;
    assert!(err("").contains("empty filter"));
    assert!(err("host").contains("`host` needs a value"));
    assert!(err("host 1.2.3").contains("host `1.2.3`: not an IPv4 or IPv6 address"));
    assert!(err("port 70000").contains("port `70000`"));
    assert!(err("proto sctp").contains("one of tcp, udp, icmp"));
    assert!(err("host 1.2.3.4 or port 80").contains("`or`: terms are joined by `and`"));
    assert!(err("tcp and").contains("`and` at the end"));
    assert!(err("banana").contains("`banana`: not a term"));
    let nine = ["tcp"; 9].join(" and ");
    assert!(err(&nine).contains("more than 8 terms"));
}

#[test]
fn a_packet_another_node_sent_on_matches_by_the_packet_inside() {
    let inner = testkit::ip_of(&syn("198.51.100.7", 40000, "192.0.2.10", 80));
    let mut payload = vec![0u8; tunnel::HEADER_LEN];
    tunnel::emit(
        &mut payload,
        &tunnel::Header {
            flags: tunnel::FLAG_TRACE,
            hops: 1,
            primary: 2,
            backup: 3,
        },
    );
    payload.extend_from_slice(&inner);
    let outer = testkit::udp(
        [2; 6],
        [4; 6],
        ip("10.0.0.1"),
        6070,
        ip("10.0.0.2"),
        6070,
        &payload,
    );
    let seen = Seen::of(&outer, Some(6070));
    assert_eq!(seen.node.map(|h| h.primary), Some(2));
    assert!(matches("host 198.51.100.7 and port 80", &outer));
    assert!(
        !matches("host 10.0.0.1", &outer),
        "the outer packet is not the flow"
    );
    // Its mark makes any armed tracer take it, whatever its filter, and costs no count.
    let left = Arc::new(AtomicU32::new(0));
    let mut t = Tracer::new(1, Filter::parse("host 203.0.113.1").unwrap(), left);
    assert_eq!(t.wants(&outer, Some(6070)), Some(true));
    assert_eq!(
        t.wants(&syn("203.0.113.1", 1, "192.0.2.10", 80), Some(6070)),
        None
    );
}

#[test]
fn the_count_is_shared_and_full_records_are_counted_as_missed() {
    let left = Arc::new(AtomicU32::new(RECORDS_PER_TRACER as u32 + 10));
    let f = Filter::parse("tcp").unwrap();
    let mut t = Tracer::new(1, f, Arc::clone(&left));
    let frame = syn("198.51.100.7", 40000, "192.0.2.10", 80);
    for _ in 0..RECORDS_PER_TRACER + 3 {
        if t.wants(&frame, None).is_some() {
            t.push(Record::new(0, 0, 0, &frame));
        }
    }
    assert_eq!(t.records().len(), RECORDS_PER_TRACER);
    assert_eq!(t.missed, 3);
    assert_eq!(left.load(Ordering::Relaxed), 10);
    t.clear();
    assert!(t.records().is_empty() && t.missed == 0);
}

proptest! {
    #[test]
    fn seeing_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let s = Seen::of(&b, Some(6070));
        let _ = Filter::parse("host 1.2.3.4 and port 80").unwrap().matches(&s);
        let mut r = Record::new(0, 0, 0, &b);
        r.after = Kept::of(&b);
        r.verdict = Outcome::Sent(0);
        let services = services();
        let _ = explain::tell(&r, &services);
    }
}
