//! Kafka client settings shared by the services (`kafka.*` keys) and the few admin
//! operations tests and tools need. Only plain Kafka protocol features are used, so any
//! Kafka-compatible broker works.

use crate::config_loader::ConfigLoadError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `kafka` section of a service's configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Comma separated `host:port` list (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Put in front of every topic name; empty in production. Lets several deployments
    /// (or test runs) share one cluster.
    #[serde(default)]
    pub topic_prefix: String,
    /// Extra librdkafka properties, applied last. `_` in a name stands for `.`, so that
    /// they can come from environment variables: `MEDBOOK_KAFKA__PROPERTIES__SECURITY_PROTOCOL`
    /// sets `security.protocol` (librdkafka's names have no `_`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn validate(&self) -> Result<(), ConfigLoadError> {
        if self.brokers.split(',').any(|b| {
            let b = b.trim();
            b.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(ConfigLoadError::invalid(
                "kafka.brokers",
                "must be a comma separated list of host:port",
            ));
        }
        if !self
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(ConfigLoadError::invalid(
                "kafka.topic_prefix",
                "may only contain ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(())
    }

    /// The full name of one of the system's topics.
    pub fn topic(&self, base: &str) -> String {
        crate::events::topic_name(&self.topic_prefix, base)
    }

    /// A client configuration with the brokers, `client.id` and the extra properties.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        for (k, v) in &self.properties {
            config.set(k.replace('_', "."), v);
        }
        config
    }

    /// Creates the system's topics (with the prefix, replication factor 1) if they do not
    /// exist yet; existing topics are left as they are. For local runs and tests: a
    /// production cluster's topics are created by its deployment (see docker-compose).
    pub async fn create_topics(
        &self,
        partitions: i32,
        timeout: Duration,
    ) -> Result<(), anyhow::Error> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config("medbook-admin").create()?;
        let names: Vec<String> = crate::events::ALL_TOPICS
            .iter()
            .map(|t| self.topic(t))
            .collect();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(timeout)),
            )
            .await?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}
