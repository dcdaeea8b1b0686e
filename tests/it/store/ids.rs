//! Integer ids: unique across processes and gap-free while many are asked for at once
//! (concurrent requests share a write).

use std::collections::BTreeSet;

use medledger_application::ports::IdGenerator;
use medledger_infrastructure::ids::SqlIdGenerator;
use medledger_tests::Kind;

use super::support::Fixture;

async fn ids_are_unique_and_gap_free_under_concurrency(kind: Kind) {
    let Some(fx) = Fixture::new(kind).await else { return };
    let second = fx.second_instance().await;
    let (one, two) = (SqlIdGenerator::new(fx.db.aux.clone()), SqlIdGenerator::new(second.aux.clone()));
    let asks = (0..200).map(|i| {
        let generator = if i % 2 == 0 { one.clone() } else { two.clone() };
        tokio::spawn(async move { generator.next_id("widget").await })
    });
    let mut ids = BTreeSet::new();
    for asked in futures::future::join_all(asks).await {
        assert!(ids.insert(asked.unwrap().unwrap()), "an id was handed out twice");
    }
    assert_eq!(ids, (1..=200).collect::<BTreeSet<i64>>());
    // Sequences are independent, and a later request continues where the last left off.
    assert_eq!(one.next_id("gadget").await.unwrap(), 1);
    assert_eq!(two.next_id("widget").await.unwrap(), 201);
}
conformance!(ids_are_unique_and_gap_free_under_concurrency);
