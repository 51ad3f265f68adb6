"""The real local stack without Docker: Apache Kafka from Maven Central on the JDK, and PostgreSQL."""
