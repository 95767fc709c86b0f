#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, on localhost, for the tests and
# for trying `snakemake --profile slurm` on a workstation.
#
#   bash tests/slurm_cluster.sh start    # install what is missing, start, wait until idle
#   bash tests/slurm_cluster.sh status   # exit 0 when every daemon is up and the node answers
#   bash tests/slurm_cluster.sh stop     # stop exactly the daemons that `start` started
#
# Runs as root, non-interactively (CI), on Debian/Ubuntu. What it sets up:
#   munge -> MariaDB (private data dir, 127.0.0.1 only) -> slurmdbd (accounting_storage/mysql)
#   -> sacctmgr: cluster, account `lab`, user root -> slurmctld -> slurmd.
#   One node (this host's short name; CPUs and RealMemory from `slurmd -C`), two partitions
#   on it: `cpu` (default) and `gpu` (no GRES: there is no GPU here; it exists so that
#   training jobs can be sent to a partition of their own, as on a real cluster).
#
# Everything (configs, spool, logs, database, PID files) lives in $RARELEARN_SLURM_STATE
# (default /tmp/rarelearn-slurm). `stop` kills only the PIDs recorded there, after checking
# that each PID still runs the program it was started as; an already running munged that
# this script did not start is used and left alone. Clients find the configuration through
# $RARELEARN_SLURM_STATE/etc/slurm.conf: `start` links /etc/slurm/slurm.conf to it when
# that file does not exist (otherwise `export SLURM_CONF=...`, printed by `start`).
#
# Settings (environment): RARELEARN_SLURM_STATE, RARELEARN_SLURM_DB_PORT (MariaDB, 33306),
# RARELEARN_SLURM_CLUSTER (cluster name, rarelearn), RARELEARN_SLURM_ACCOUNT (lab).
set -euo pipefail

STATE=${RARELEARN_SLURM_STATE:-/tmp/rarelearn-slurm}
DB_PORT=${RARELEARN_SLURM_DB_PORT:-33306}
CLUSTER=${RARELEARN_SLURM_CLUSTER:-rarelearn}
ACCOUNT=${RARELEARN_SLURM_ACCOUNT:-lab}
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order; stop is the reverse
SLURM_CONF_FILE=$STATE/etc/slurm.conf
export SLURM_CONF=$SLURM_CONF_FILE
export DEBIAN_FRONTEND=noninteractive

T0=$EPOCHREALTIME
TP=$T0
log() { printf '[slurm_cluster %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*"; exit 1; }
# phase NAME: report the time since the previous phase ended.
phase() {
    local now=$EPOCHREALTIME
    log "$(awk -v n="$1" -v a="$TP" -v b="$now" -v z="$T0" \
        'BEGIN { printf "%-26s %6.1f s  (total %6.1f s)", n, b - a, b - z }')"
    TP=$now
}
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            log "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

pidfile() { echo "$STATE/pids/$1.pid"; }

# The recorded PID of daemon $1 if that process is alive and still runs $1, else nothing.
live_pid() {
    local f pid comm
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$1" ]] || return 1
    echo "$pid"
}

# launch NAME COMMAND...: start a daemon in the foreground mode of its own, in a session
# of its own (so that killing a test's process group cannot touch it), record its PID.
launch() {
    local name=$1
    shift
    # 9>&-: the daemon must not inherit (and so hold) this script's lock.
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 9>&- &
    local pid=$!
    echo "$pid" >"$(pidfile "$name")"
    # setsid execs the daemon in place (the background job is not a group leader),
    # so $! is the daemon; check that it came up as the expected program.
    local i
    for i in $(seq 50); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start; last lines of its logs:"
    tail -n 30 "$STATE/log/$name.out" "$STATE/log/$name.log" 2>/dev/null || true
    return 1
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        phase "packages (all present)"
        return
    fi
    [[ $(id -u) == 0 ]] || die "missing packages ${missing[*]}; run as root to install them"
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get"
    log "installing: ${missing[*]}"
    apt-get update -q </dev/null >"$STATE/log/apt.log" 2>&1 || {
        tail -n 20 "$STATE/log/apt.log"
        die "apt-get update failed"
    }
    phase "apt-get update"
    # Keep the packages' own services from starting (we run our own instances) through
    # the standard policy-rc.d hook; only when no policy is installed already.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# rarelearn slurm_cluster.sh: no service starts during install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours=1
    fi
    local rc=0
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null >>"$STATE/log/apt.log" 2>&1 || rc=$?
    if ((ours)) && grep -q "rarelearn slurm_cluster.sh" "$policy" 2>/dev/null; then
        rm -f "$policy"
    fi
    if ((rc != 0)); then
        tail -n 30 "$STATE/log/apt.log"
        die "apt-get install failed"
    fi
    phase "apt-get install"
}

write_configs() {
    local host node_line
    host=$(hostname -s)
    # slurmd -C: "NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=..
    # ThreadsPerCore=.. RealMemory=.." (then an UpTime line).
    node_line=$(slurmd -C | head -n 1)
    [[ $node_line == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    node_line=${node_line/NodeName=$host/NodeName=$host NodeAddr=127.0.0.1}

    if [[ ! -s $STATE/etc/db.pass ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/etc/db.pass")
    fi
    local pass
    pass=$(<"$STATE/etc/db.pass")

    cat >"$SLURM_CONF_FILE" <<EOF
# Written by rarelearn tests/slurm_cluster.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Accounting through slurmdbd (sacct is what Snakemake's executor asks for job states).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageEnforce=associations
JobCompType=jobcomp/none

$node_line State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF

    (umask 077 && cat >"$STATE/etc/slurmdbd.conf" <<EOF
# Written by rarelearn tests/slurm_cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$STATE/etc/slurmdbd.conf"

    # Let plain `sinfo`/`sbatch`/`sacct` (and so Snakemake) find the cluster.
    mkdir -p /etc/slurm
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$SLURM_CONF_FILE" ]]; then
        :
    elif [[ ! -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
        ln -s "$SLURM_CONF_FILE" /etc/slurm/slurm.conf
    else
        log "NOTE: /etc/slurm/slurm.conf belongs to another setup; clients need: export SLURM_CONF=$SLURM_CONF_FILE"
    fi
}

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if live_pid munged >/dev/null; then
        return
    fi
    if munge_ok; then
        log "munge: using the munged already running (not started here, will not be stopped)"
        rm -f "$(pidfile munged)"
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
    wait_for 20 "munge" munge_ok || die "munged does not answer (see /var/log/munge/munged.log)"
}

# shellcheck disable=SC2120  # (called with arguments through wait_for)
mysql_root() { mariadb --no-defaults --protocol=socket -S "$STATE/run/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    if ! live_pid mariadbd >/dev/null; then
        if [[ ! -d $STATE/mysql/mysql ]]; then
            rm -rf "$STATE/mysql"
            mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$STATE/log/mariadb-install.out" 2>&1 || {
                tail -n 30 "$STATE/log/mariadb-install.out"
                die "mariadb-install-db failed"
            }
            phase "mariadb: new data dir"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null; then
            die "port $DB_PORT is taken by another program; set RARELEARN_SLURM_DB_PORT"
        fi
        launch mariadbd /usr/sbin/mariadbd --no-defaults --user=root --datadir="$STATE/mysql" \
            --socket="$STATE/run/mysqld.sock" --pid-file="$STATE/run/mariadbd.pid" \
            --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
            --log-error="$STATE/log/mariadbd.log" \
            --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
            --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=2
    fi
    wait_for 60 "mariadb" mysql_root -e "SELECT 1" || {
        tail -n 30 "$STATE/log/mariadbd.log" 2>/dev/null || true
        die "mariadb does not answer"
    }
    local pass
    pass=$(<"$STATE/etc/db.pass")
    # shellcheck disable=SC2119
    mysql_root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_slurmdbd() {
    if ! live_pid slurmdbd >/dev/null; then
        port_taken 6819 && die "port 6819 (slurmdbd) is taken by a slurmdbd this script did not start"
        launch slurmdbd /usr/sbin/slurmdbd -D
    fi
    # slurmdbd creates its tables on first start (a few seconds)
    wait_for 90 "slurmdbd" sacctmgr -n -P list cluster || {
        tail -n 30 "$STATE/log/slurmdbd.log" "$STATE/log/slurmdbd.out" 2>/dev/null || true
        die "slurmdbd does not answer"
    }
}

setup_accounting() {
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="rarelearn tests" Organization=rarelearn >/dev/null
    sacctmgr -n -P list user format=user | grep -qx root ||
        sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
    sacctmgr -n -P list assoc where cluster="$CLUSTER" user=root account="$ACCOUNT" format=account |
        grep -qx "$ACCOUNT" || sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
}

node_idle() { [[ $(sinfo -h -N -p cpu -o %T 2>/dev/null | head -n 1) =~ ^(idle|mixed|allocated) ]]; }

start_slurmctld() {
    if ! live_pid slurmctld >/dev/null; then
        port_taken 6817 && die "port 6817 (slurmctld) is taken by a slurmctld this script did not start"
        launch slurmctld /usr/sbin/slurmctld -D
    fi
    wait_for 30 "slurmctld" scontrol ping || {
        tail -n 30 "$STATE/log/slurmctld.log" 2>/dev/null || true
        die "slurmctld does not answer"
    }
}

start_slurmd() {
    if ! live_pid slurmd >/dev/null; then
        port_taken 6818 && die "port 6818 (slurmd) is taken by a slurmd this script did not start"
        launch slurmd /usr/sbin/slurmd -D
    fi
    wait_for 30 "the node to be idle" node_idle || {
        sinfo -N -l || true
        tail -n 30 "$STATE/log/slurmd.log" "$STATE/log/slurmctld.log" 2>/dev/null || true
        die "node not idle"
    }
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "run as root"
    mkdir -p "$STATE"/{etc,log,pids,run,spool/slurmctld,spool/slurmd}
    exec 9>"$STATE/lock"
    flock -w 300 9 || die "another slurm_cluster.sh holds $STATE/lock"
    log "state dir $STATE"
    install_packages
    write_configs
    phase "configs"
    start_munge
    phase "munge"
    start_mariadb
    phase "mariadb"
    start_slurmdbd
    phase "slurmdbd"
    setup_accounting
    phase "accounting (sacctmgr)"
    start_slurmctld
    phase "slurmctld"
    start_slurmd
    phase "slurmd, node idle"
    sinfo
    log "cluster '$CLUSTER' is up; account '$ACCOUNT'; clients: export SLURM_CONF=$SLURM_CONF_FILE"
}

# stop_daemon NAME: TERM the recorded PID (if it still runs NAME), wait, then KILL.
stop_daemon() {
    local name=$1 pid
    if ! pid=$(live_pid "$name"); then
        rm -f "$(pidfile "$name")"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local end=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; do
        if ((SECONDS >= end)); then
            log "$name ($pid) ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$(pidfile "$name")"
    log "stopped $name ($pid)"
}

cmd_stop() {
    [[ -d $STATE ]] || {
        log "nothing to stop ($STATE does not exist)"
        return
    }
    exec 9>"$STATE/lock"
    flock -w 300 9 || die "another slurm_cluster.sh holds $STATE/lock"
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
    phase "stop"
}

cmd_status() {
    local name pid up=0
    for name in "${DAEMONS[@]}"; do
        if pid=$(live_pid "$name"); then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
        elif [[ $name == munged ]] && munge_ok; then
            printf '%-10s running (not started by this script)\n' "$name"
        else
            printf '%-10s stopped\n' "$name"
            up=1
        fi
    done
    if ((up == 0)) && node_idle; then
        sinfo
        echo "SLURM_CONF=$SLURM_CONF_FILE"
        return 0
    fi
    return 3
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
