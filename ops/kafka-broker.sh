#!/usr/bin/env bash
# Apache Kafka for tests and local use: a single-node KRaft broker (broker and controller in one
# JVM) on a log directory on disk, so it can be killed and restarted with its topics, offsets
# and consumer groups intact.
#
# The broker's jars come from Maven Central (ops/kafka/pom.xml pins the version), resolved once
# into a cache outside the clone, keyed by version ($VINSCAN_TOOLS, default
# ~/.cache/vinscan/tools). Needs Java 17+ and Maven.
#
#   ops/kafka-broker.sh install          resolve the jars if the cache lacks them, print the folder
#   ops/kafka-broker.sh start DATA_DIR   format DATA_DIR/log on first use (cluster id, SCRAM user),
#                                        make a CA and a server certificate on first use, start the
#                                        broker, wait until it answers, print `export ...` lines:
#       VINSCAN_TEST_KAFKA           127.0.0.1:$VINSCAN_KAFKA_PORT (default 19092), PLAINTEXT
#       VINSCAN_TEST_KAFKA_SASL_SSL  127.0.0.1:$VINSCAN_KAFKA_PORT+2, SASL_SSL with SCRAM-SHA-512
#       VINSCAN_TEST_KAFKA_CA        the CA certificate (PEM) that signed the broker's certificate
#       VINSCAN_TEST_KAFKA_USER / _PASSWORD   the SCRAM credentials
#       VINSCAN_TEST_KAFKA_PID / _DATA        the broker's pid and DATA_DIR (to kill and restart it)
#                                        The controller listens on $VINSCAN_KAFKA_PORT+1.
#                                        pid in DATA_DIR/.pid, log in DATA_DIR/.log
#   ops/kafka-broker.sh stop DATA_DIR    stop it (SIGTERM, then SIGKILL after 30 s)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
tools=${VINSCAN_TOOLS:-$HOME/.cache/vinscan/tools}
root="$tools/apache-kafka-$version"
port=${VINSCAN_KAFKA_PORT:-19092}
user=vinscan
# A test-only credential for a broker that listens on 127.0.0.1.
password=vinscan-test-scram-secret

install() {
  mkdir -p "$tools"
  # one resolver at a time (two test runs starting together share the cache)
  exec 9>"$tools/.apache-kafka.lock"
  flock 9
  if [ ! -f "$root/.complete" ]; then
    echo "ops/kafka-broker.sh: resolving Apache Kafka $version from Maven Central into $root" >&2
    rm -rf "$root"
    mkdir -p "$root"
    mvn -B -q -f "$here/kafka/pom.xml" -Dmaven.repo.local="$tools/maven-repository" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DoutputDirectory="$root/libs" -DincludeScope=runtime >&2
    cp "$here/kafka/log4j2.properties" "$root/"
    touch "$root/.complete"
  fi
  flock -u 9
  echo "$root"
}

# Whether a process is alive: a zombie (exited, not yet reaped by whoever adopted it) is not.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# The JVM command line; run directly (not through a shell function) so that the background
# job's pid is the JVM's own, which tests signal (SIGSTOP, SIGKILL).
jvm=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$root/log4j2.properties" -cp "$root/libs/*")

# A CA and a server certificate for 127.0.0.1/localhost, the server's key and chain as PKCS#12.
make_tls() {
  local final=$1 tls
  [ -f "$final/.complete" ] && return
  # made in a scratch folder and moved into place whole: an interrupted run leaves no half
  tls=$(mktemp -d "$final.XXXXXX")
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vinscan test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 3650 -extfile "$tls/san.ext" -out "$tls/server.pem" 2>/dev/null
  openssl pkcs12 -export -in "$tls/server.pem" -inkey "$tls/server.key" -name broker \
    -passout pass:"$password" -out "$tls/server.p12"
  touch "$tls/.complete"
  rm -rf "$final"
  mv "$tls" "$final"
}

write_properties() {
  local data=$1 tls=$1/tls
  cat >"$data/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1)),SASL_SSL://127.0.0.1:$((port + 2))
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$((port + 2))
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/server.p12
ssl.keystore.password=$password
ssl.key.password=$password
log.dirs=$data/log
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
}

start() {
  local data=$1
  install >/dev/null
  mkdir -p "$data"
  data=$(cd "$data" && pwd)
  make_tls "$data/tls"
  write_properties "$data"
  if [ ! -f "$data/log/meta.properties" ]; then
    # a Kafka Uuid: 16 random bytes, base64url without padding; like Kafka's own
    # Uuid.randomUuid, never one starting with '-' (it would read as an option)
    local cluster=-
    while [ "${cluster:0:1}" = - ]; do
      cluster=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster" -c "$data/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$user,password=$password]" >"$data/.format.log" 2>&1 || {
      cat "$data/.format.log" >&2
      exit 1
    }
  fi
  local p
  for p in "$port" $((port + 1)) $((port + 2)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "ops/kafka-broker.sh: port $p is already in use (another broker?)" >&2
      exit 1
    fi
  done
  local logged=0
  [ -f "$data/.log" ] && logged=$(wc -c <"$data/.log")
  "${jvm[@]}" kafka.Kafka "$data/server.properties" >>"$data/.log" 2>&1 </dev/null &
  echo $! >"$data/.pid"
  # ready when this start's log says so (listeners open before the broker is unfenced);
  # a restart after SIGKILL recovers its logs first, so allow 3 minutes
  for _ in $(seq 1800); do
    if ! alive "$(cat "$data/.pid")"; then break; fi
    if tail -c +$((logged + 1)) "$data/.log" | grep -q "Kafka Server started"; then
      printf 'export VINSCAN_TEST_KAFKA=%q VINSCAN_TEST_KAFKA_PID=%q VINSCAN_TEST_KAFKA_DATA=%q' \
        "127.0.0.1:$port" "$(cat "$data/.pid")" "$data"
      printf ' VINSCAN_TEST_KAFKA_SASL_SSL=%q VINSCAN_TEST_KAFKA_CA=%q' \
        "127.0.0.1:$((port + 2))" "$data/tls/ca.pem"
      printf ' VINSCAN_TEST_KAFKA_USER=%q VINSCAN_TEST_KAFKA_PASSWORD=%q\n' "$user" "$password"
      exit 0
    fi
    sleep 0.1
  done
  echo "ops/kafka-broker.sh: Apache Kafka did not start; log:" >&2
  tail -50 "$data/.log" >&2
  exit 1
}

stop() {
  local data=$1 pid
  [ -f "$data/.pid" ] || return 0
  pid=$(cat "$data/.pid")
  kill -CONT "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 300); do
    alive "$pid" || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$data/.pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?data dir}" ;;
  stop) stop "${2:?data dir}" ;;
  *)
    echo "usage: $0 install | start DATA_DIR | stop DATA_DIR" >&2
    exit 2
    ;;
esac
