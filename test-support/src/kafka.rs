//! Kafka for tests: per-test topic sets on the shared broker, a private broker a test
//! may pause (SIGSTOP) to simulate an outage, and a reader that collects what the
//! services published.

use medbook_shared::kafka::{KafkaSettings, OutgoingRecord, ReliableProducer};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared test broker started by `./scripts/test.sh`.
pub fn shared_brokers() -> String {
    crate::env("MEDBOOK_TEST_KAFKA_BROKERS")
}

/// The system's topics under a prefix unique to one test.
#[derive(Debug, Clone)]
pub struct TestTopics {
    pub brokers: String,
    pub prefix: String,
}

impl TestTopics {
    /// Creates the topics (with `partitions` partitions each) on `brokers`.
    pub async fn create(brokers: &str, partitions: i32) -> Self {
        let topics = Self {
            brokers: brokers.to_owned(),
            prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        topics
            .settings()
            .create_topics(partitions, Duration::from_secs(20))
            .await
            .unwrap();
        topics
    }

    /// On the shared broker.
    pub async fn shared(partitions: i32) -> Self {
        Self::create(&shared_brokers(), partitions).await
    }

    pub fn settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.brokers.clone(),
            topic_prefix: self.prefix.clone(),
            properties: Default::default(),
        }
    }

    pub fn topic(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// Publishes raw messages and waits for the broker's acknowledgements.
    pub async fn produce(&self, records: Vec<(String, Option<Vec<u8>>, Vec<u8>)>) {
        let producer =
            ReliableProducer::new(&self.settings(), "test-producer", Duration::from_secs(10))
                .unwrap();
        let records: Vec<OutgoingRecord> = records
            .into_iter()
            .map(|(base, key, payload)| OutgoingRecord {
                topic: self.topic(&base),
                key,
                payload,
                headers: vec![],
            })
            .collect();
        for r in producer.deliver_all(&records).await {
            r.unwrap();
        }
    }

    /// A reader of the given topics (base names) from their beginning.
    pub async fn reader(&self, bases: &[&str]) -> TopicReader {
        let mut config = self.settings().client_config("test-reader");
        config
            .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false");
        let consumer: StreamConsumer = config.create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for base in bases {
            let topic = self.topic(base);
            // The shared broker can drop a connection under load: a transient transport
            // failure is asked again, within the deadline.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut backoff = medbook_service_kit::retry::Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(2),
            );
            let md = loop {
                match consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)) {
                    Ok(md) => break md,
                    Err(e) if std::time::Instant::now() < deadline => {
                        eprintln!("metadata of {topic}: {e}; asking again");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => panic!("no metadata of {topic} within 30 s: {e}"),
                }
            };
            for t in md.topics() {
                for p in t.partitions() {
                    tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
                        .unwrap();
                }
            }
        }
        consumer.assign(&tpl).unwrap();
        TopicReader {
            consumer,
            prefix: self.prefix.clone(),
            seen: Vec::new(),
        }
    }
}

/// One message as a test sees it; `topic` without the test prefix.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

pub struct TopicReader {
    consumer: StreamConsumer,
    prefix: String,
    pub seen: Vec<Received>,
}

impl TopicReader {
    /// Reads until at least `n` messages were seen in all, then `settle` longer (so that
    /// extra messages would be noticed). Panics if `n` do not arrive within `timeout`.
    pub async fn read(&mut self, n: usize, timeout: Duration, settle: Duration) -> &[Received] {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.seen.len() < n {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    let r = received(&m, &self.prefix);
                    self.seen.push(r);
                }
                // Broker-side trouble (an outage a test causes): librdkafka reconnects.
                Ok(Err(_)) => {}
                Err(_) => panic!(
                    "only {} of {n} messages arrived within {timeout:?}",
                    self.seen.len()
                ),
            }
        }
        let settle_until = tokio::time::Instant::now() + settle;
        while let Ok(next) = tokio::time::timeout_at(settle_until, self.consumer.recv()).await {
            if let Ok(m) = next {
                let r = received(&m, &self.prefix);
                self.seen.push(r);
            }
        }
        &self.seen
    }
}

fn received(m: &rdkafka::message::BorrowedMessage<'_>, prefix: &str) -> Received {
    Received {
        topic: m
            .topic()
            .strip_prefix(prefix)
            .unwrap_or(m.topic())
            .to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A broker of the test's own (tansu, memory storage) on a free port. Pausing it
/// (SIGSTOP) is an outage: connections stay open but nothing answers. Stopping it is
/// one too, with every connection refused; restarted, it listens on the same port
/// (empty: memory storage).
pub struct PrivateBroker {
    child: Child,
    pub port: u16,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let port = crate::free_port();
        Self {
            child: Self::spawn(port).await,
            port,
        }
    }

    async fn spawn(port: u16) -> Child {
        let bin = crate::env("MEDBOOK_TEST_TANSU_BIN");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::eventually(
            "the private broker to listen",
            Duration::from_secs(10),
            || async {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        child
    }

    /// The broker process ends: connections are closed and new ones refused.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new broker process on the same port (after [`stop`](Self::stop)).
    pub async fn restart(&mut self) {
        self.child = Self::spawn(self.port).await;
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        crate::signal(&self.child, sig);
    }

    /// The outage starts.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// The outage ends.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
