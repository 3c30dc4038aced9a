//! Conditional forwarding (`[[forward]]`): names under a rule's domains go to its servers
//! only; the main upstream never sees them. Two real in-process upstreams on loopback.

use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer};

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_names_under_a_forward_domain_go_to_its_servers_only() {
    let main = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.1", 300),
        a("intranet.corp.test.", "192.0.2.66", 300),
    ])
    .await;
    let corp = FakeUpstream::start(vec![a("intranet.corp.test.", "10.0.0.5", 300)]).await;
    let cfg = |forward: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 2\n\
             [upstream]\nservers = [\"{}\"]\n{forward}",
            main.addr
        )
    };
    let rule = format!(
        "[[forward]]\ndomains = [\"corp.test\"]\nservers = [\"{}\"]\n",
        corp.addr
    );
    let s = TestServer::start(&cfg(&rule), &[]).await;
    assert_eq!(
        first_answer(&s.query("intranet.corp.test.", RecordType::A).await),
        "10.0.0.5"
    );
    assert_eq!(
        first_answer(&s.query_tcp("intranet.corp.test.", RecordType::AAAA).await),
        ""
    );
    assert_eq!(corp.calls(), 2);
    assert_eq!(
        main.calls(),
        0,
        "the main upstream never saw the corp names"
    );
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.1"
    );
    assert_eq!((main.calls(), corp.calls()), (1, 2));
    // A reload without the rule sends the (uncached) name to the main upstream again.
    std::fs::write(s.path("sinkhole.toml"), cfg("")).unwrap();
    s.service().reloader().reload(true).await.unwrap();
    assert_eq!(
        first_answer(&s.query("intranet.corp.test.", RecordType::TXT).await),
        ""
    );
    assert_eq!((main.calls(), corp.calls()), (2, 2));
}
