# Sourced by the scripts: installs what the build and the tests need when it is missing.
# Debian packages (as root): unzip (the flights data) and gcc (TLS is rustls, with aws-lc-rs built
# by cc: no OpenSSL); the Rust target wasm32-wasip2, clippy and rustfmt; cargo-nextest; from PyPI, moto (S3) and
# schemathesis (OpenAPI fuzzing).

ensure_tools() {
  local missing=()
  command -v unzip >/dev/null 2>&1 || missing+=(unzip)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and run again" >&2
      return 1
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust with rustup (https://rustup.rs) and run again" >&2
    return 1
  fi
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
  fi
  local comp
  for comp in clippy rustfmt; do
    if ! rustup component list --installed | grep -q "^$comp"; then
      rustup component add "$comp"
    fi
  done
}

# The nycflights13 data of the example tests and benchmarks (`NIYANTA_DATA_DIR`): as given, else
# `data/` in the repository, whose files are checked against their SHA256SUMS.
ensure_data() {
  local root="$1"
  NIYANTA_DATA_DIR="${NIYANTA_DATA_DIR:-$root/data}"
  if [[ ! -f $NIYANTA_DATA_DIR/nycflights13/flights.csv.zip ]]; then
    echo "no nycflights13/flights.csv.zip under $NIYANTA_DATA_DIR: set NIYANTA_DATA_DIR to the data directory" >&2
    return 1
  fi
  if ! (cd "$NIYANTA_DATA_DIR/nycflights13" && sha256sum --quiet -c SHA256SUMS); then
    echo "$NIYANTA_DATA_DIR/nycflights13 does not match its SHA256SUMS" >&2
    return 1
  fi
  export NIYANTA_DATA_DIR
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
  fi
}

# PostgreSQL on 127.0.0.1:5432 for the state-store tests: started when installed but stopped,
# installed (Debian's `postgresql`, local connections trusted) when missing and running as root.
# Fails, never skips, when it cannot be reached.
ensure_postgres() {
  local host=127.0.0.1 port=5432
  # The recovery tests run a server of their own with initdb and pg_ctl from this package.
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port" \
    && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
      echo "PostgreSQL is not installed: install it (apt-get install postgresql) and run again" >&2
      return 1
    fi
    echo "installing PostgreSQL" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    local hba
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      grep -q '^host all all 127.0.0.1/32 trust' "$hba" && continue
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    done
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || pg_ctlcluster "$version" main start || true
  local _
  for _ in $(seq 1 30); do
    pg_isready -q -h "$host" -p "$port" && return 0
    sleep 1
  done
  echo "PostgreSQL does not answer on $host:$port" >&2
  return 1
}

# NATS with JetStream on 127.0.0.1:4222 for the broker and distributed tests: started when
# installed but stopped, installed (Debian's `nats-server`) when missing and running as root.
# Fails, never skips, when it cannot be reached.
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
ensure_nats() {
  # The recovery tests start servers of their own, so the program must be here even when a
  # shared server already answers.
  if ! command -v nats-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/nats-server ]]; then
    if [[ $(id -u) -ne 0 ]]; then
      echo "nats-server is not installed: install it (apt-get install nats-server) and run again" >&2
      return 1
    fi
    echo "installing nats-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  fi
  nats_up && return 0
  echo "starting nats-server" >&2
  mkdir -p /tmp/niyanta-nats
  nohup "$(command -v nats-server || echo /usr/sbin/nats-server)" -a 127.0.0.1 -p 4222 -js -sd /tmp/niyanta-nats >/tmp/niyanta-nats.log 2>&1 &
  local _
  for _ in $(seq 1 30); do
    nats_up && return 0
    sleep 1
  done
  echo "NATS does not answer on 127.0.0.1:4222" >&2
  return 1
}

# A local S3-compatible server for the object-storage tests: moto's server mode (PyPI
# `moto[server]`, installed into a virtual environment under the target directory when missing),
# on 127.0.0.1:$NIYANTA_TEST_S3_PORT (default 9787). Exports NIYANTA_TEST_S3_ENDPOINT. A server
# already answering there is used as it is; one started here is stopped by `stop_s3` (the
# caller's exit trap), so that no server outlives the virtual environment it runs from.
ensure_s3() {
  local port="${NIYANTA_TEST_S3_PORT:-9787}"
  export NIYANTA_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  s3_up() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
  s3_up && return 0
  local venv="${CARGO_TARGET_DIR:-$ROOT/target}/moto-venv"
  if [[ ! -x "$venv/bin/moto_server" ]]; then
    echo "installing moto (S3-compatible test server) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'moto[server]==5.1.*'
  fi
  echo "starting moto on 127.0.0.1:$port" >&2
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/niyanta-moto.log" 2>&1 &
  S3_STARTED_PID=$!
  local _
  for _ in $(seq 1 30); do
    s3_up && return 0
    sleep 1
  done
  echo "the S3 test server does not answer on 127.0.0.1:$port" >&2
  return 1
}

# Stops the S3 test server that `ensure_s3` started, if it started one.
stop_s3() {
  if [[ -n "${S3_STARTED_PID:-}" ]]; then
    kill "$S3_STARTED_PID" 2>/dev/null || true
    wait "$S3_STARTED_PID" 2>/dev/null || true
  fi
}

# schemathesis (PyPI), the OpenAPI fuzzer of the API tests, in a venv beside the target directory;
# exports NIYANTA_TEST_SCHEMATHESIS, the path of its command.
ensure_schemathesis() {
  if [[ -n "${NIYANTA_TEST_SCHEMATHESIS:-}" && -x "$NIYANTA_TEST_SCHEMATHESIS" ]]; then return 0; fi
  local venv="${CARGO_TARGET_DIR:-$ROOT/target}/schemathesis-venv"
  if [[ ! -x "$venv/bin/schemathesis" ]]; then
    echo "installing schemathesis (OpenAPI fuzzer) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis==4.*'
  fi
  export NIYANTA_TEST_SCHEMATHESIS="$venv/bin/schemathesis"
}
