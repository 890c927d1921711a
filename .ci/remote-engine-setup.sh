#!/usr/bin/env bash
# A second Docker engine that CANNOT see this machine's folders, for tests/remote and
# bench/bench_remote.py: reached over TCP on 127.0.0.1 and over ssh:// through a local sshd.
#
# - dockerd runs in its own mount namespace (unshare -m) with private tmpfs mounts over
#   /tmp, /root, /home, /work and /var/tmp, so a bind mount of a test folder fails there
#   exactly as on another machine; its own data root (cached: the test image is loaded
#   once), exec root and pid file. It also gets its own network namespace (unshare -n):
#   a second dockerd in the first one's removes the first one's docker0 bridge (seen here).
#   So it listens on a unix socket only, and a small relay (python3, this script's own)
#   serves it on tcp://127.0.0.1:PORT.
# - sshd (Debian's openssh-server) on 127.0.0.1 with its own host key and a generated
#   client key, SetEnv DOCKER_HOST pointing at the second engine's socket.
#
# Idempotent: a running engine / sshd is kept; a second run takes about a second.
# Prints the settings the tests read (also written to $STATE/env).
set -euo pipefail
STATE=${PYGENT_REMOTE_STATE:-/var/cache/pygent/remote-engine-20.10}
RUN=${PYGENT_REMOTE_RUN:-/run/pygent-remote}
PORT=${PYGENT_REMOTE_PORT:-23750}
SSH_PORT=${PYGENT_REMOTE_SSH_PORT:-23722}
IMAGE=${PYGENT_TEST_IMAGE:-pygent-test:bookworm}
REMOTE="docker -H tcp://127.0.0.1:$PORT"

if ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
  apt-get install -y -qq openssh-server >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null
  }
fi
mkdir -p "$STATE/data" "$STATE/ssh" "$RUN"
chmod 700 "$STATE/ssh"

# --- the engine ------------------------------------------------------------------------------
if ! $REMOTE info >/dev/null 2>&1; then
  # setsid: the engine outlives this script (CI runs the suite after it).
  if ! docker -H "unix://$RUN/docker.sock" info >/dev/null 2>&1; then
    rm -f "$RUN/dockerd.pid" "$RUN/docker.sock"
    setsid unshare -m -n --propagation private sh -c "
      for d in /tmp /root /home /work /var/tmp; do
        [ -d \$d ] && mount -t tmpfs -o size=64m tmpfs \$d
      done
      exec dockerd --data-root '$STATE/data' --exec-root '$RUN/exec' --pidfile '$RUN/dockerd.pid' \
        -H 'unix://$RUN/docker.sock' --bridge none --iptables=false --ip-masq=false \
        --userland-proxy=false
    " >"$RUN/dockerd.log" 2>&1 </dev/null &
  fi
  # The TCP listener: a byte relay to the engine's socket (hijacked exec streams included).
  if ! { [ -f "$RUN/relay.pid" ] && kill -0 "$(cat "$RUN/relay.pid")" 2>/dev/null; }; then
    setsid python3 -c '
import asyncio, os, sys
port, path, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    finally:
        w.close()
async def serve(r, w):
    try:
        ur, uw = await asyncio.open_unix_connection(path)
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    open(pidfile, "w").write(str(os.getpid()))
    await server.serve_forever()
asyncio.run(main())
' "$PORT" "$RUN/docker.sock" "$RUN/relay.pid" >"$RUN/relay.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 120); do
    $REMOTE info >/dev/null 2>&1 && break
    sleep 0.5
  done
  $REMOTE info >/dev/null || { tail -30 "$RUN/dockerd.log"; exit 1; }
fi
# --- the same engine over TLS (tcp:// + DOCKER_TLS_VERIFY): a CA, a server certificate for
# 127.0.0.1 and a client certificate (cached), and a TLS relay that wants the client's.
TLS_PORT=${PYGENT_REMOTE_TLS_PORT:-23751}
TLS="$STATE/tls"
if [ ! -f "$TLS/cert.pem" ]; then
  mkdir -p "$TLS" && chmod 700 "$TLS"
  (
    cd "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=pygent-test-ca \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem \
      -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile server.ext -out server-cert.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout key.pem -out client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile client.ext -out cert.pem 2>/dev/null
  )
fi
if ! { [ -f "$RUN/tls-relay.pid" ] && kill -0 "$(cat "$RUN/tls-relay.pid")" 2>/dev/null; }; then
  setsid python3 -c '
import asyncio, os, ssl, sys
port, path, pidfile, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls + "/ca.pem")
ctx.load_cert_chain(tls + "/server-cert.pem", tls + "/server-key.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        w.close()
async def serve(r, w):
    try:
        ur, uw = await asyncio.open_unix_connection(path)
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=ctx)
    open(pidfile, "w").write(str(os.getpid()))
    await server.serve_forever()
asyncio.run(main())
' "$TLS_PORT" "$RUN/docker.sock" "$RUN/tls-relay.pid" "$TLS" >"$RUN/tls-relay.log" 2>&1 </dev/null &
  for _ in $(seq 1 40); do
    [ -f "$RUN/tls-relay.pid" ] && break
    sleep 0.25
  done
fi

if ! $REMOTE image inspect "$IMAGE" >/dev/null 2>&1; then
  docker save "$IMAGE" | $REMOTE load >/dev/null
fi

# --- sshd with a generated key ---------------------------------------------------------------
[ -f "$STATE/ssh/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh/host_key"
[ -f "$STATE/ssh/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh/client_key"
cp "$STATE/ssh/client_key.pub" "$STATE/ssh/authorized_keys"
cat >"$STATE/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1:$SSH_PORT
HostKey $STATE/ssh/host_key
PidFile $RUN/sshd.pid
AuthorizedKeysFile $STATE/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
AllowStreamLocalForwarding yes
SetEnv DOCKER_HOST=unix://$RUN/docker.sock
CONF
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$STATE/ssh/host_key.pub")" >"$STATE/ssh/known_hosts"
mkdir -p /run/sshd
if ! { [ -f "$RUN/sshd.pid" ] && kill -0 "$(cat "$RUN/sshd.pid")" 2>/dev/null; }; then
  /usr/sbin/sshd -f "$STATE/ssh/sshd_config"
fi
cat >"$STATE/env" <<ENV
PYGENT_REMOTE_TCP=tcp://127.0.0.1:$PORT
PYGENT_REMOTE_TLS=tcp://127.0.0.1:$TLS_PORT
PYGENT_REMOTE_CERT_PATH=$TLS
PYGENT_REMOTE_SSH=ssh://root@127.0.0.1:$SSH_PORT
PYGENT_REMOTE_SSH_KEY=$STATE/ssh/client_key
PYGENT_REMOTE_KNOWN_HOSTS=$STATE/ssh/known_hosts
PYGENT_REMOTE_SOCKET=$RUN/docker.sock
PYGENT_REMOTE_DOCKERD_PID=$RUN/dockerd.pid
ENV
cat "$STATE/env"
