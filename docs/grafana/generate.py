#!/usr/bin/env python3
# Writes sampan.json, the Grafana dashboard of a Sampan cluster, beside
# this file: `python3 docs/grafana/generate.py`. demos/tests/metrics.rs
# checks that every metric it uses is one a node exports.
import json
panels=[]
y=0
def panel(title, exprs, unit="short", kind="timeseries", w=12, h=8, desc=""):
    global y
    i=len(panels)
    x = 0 if (i%2==0 or w==24) else 12
    p={"id":i+1,"type":kind,"title":title,"description":desc,
       "datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"h":h,"w":w,"x":x,"y":y},
       "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
       "options":{},
       "targets":[{"refId":chr(65+j),"expr":e,"legendFormat":l,"datasource":{"type":"prometheus","uid":"${datasource}"}} for j,(e,l) in enumerate(exprs)]}
    panels.append(p)
    if x==12 or w==24: y+=h
sel='instance=~"$instance"'
panel("Groups without a leader", [(f'sum by (instance) (sampan_groups_leaderless{{{sel}}})',"{{instance}}")], desc="0 in a healthy cluster; above 0 for more than an election timeout is an outage of those groups.")
panel("Groups led per node", [(f'sum by (instance) (sampan_groups_led{{{sel}}})',"{{instance}}")], desc="Leaders should be spread over the nodes (balance_leaders).")
panel("Proposals per second", [(f'sum by (instance, result) (rate(sampan_proposals_total{{{sel}}}[1m]))',"{{instance}} {{result}}")], unit="ops")
panel("Proposal latency (p50, p99)", [
    (f'histogram_quantile(0.5, sum by (le, instance) (rate(sampan_proposal_seconds_bucket{{{sel}}}[1m])))',"p50 {{instance}}"),
    (f'histogram_quantile(0.99, sum by (le, instance) (rate(sampan_proposal_seconds_bucket{{{sel}}}[1m])))',"p99 {{instance}}")], unit="s", desc="From the proposal reaching the group to its result applied here.")
panel("Reads per second", [(f'sum by (instance, result) (rate(sampan_reads_total{{{sel}}}[1m]))',"{{instance}} {{result}}")], unit="ops")
panel("Read latency (p50, p99)", [
    (f'histogram_quantile(0.5, sum by (le, instance) (rate(sampan_read_seconds_bucket{{{sel}}}[1m])))',"p50 {{instance}}"),
    (f'histogram_quantile(0.99, sum by (le, instance) (rate(sampan_read_seconds_bucket{{{sel}}}[1m])))',"p99 {{instance}}")], unit="s")
panel("fdatasync round latency (p50, p99)", [
    (f'histogram_quantile(0.5, sum by (le, instance) (rate(sampan_sync_round_seconds_bucket{{{sel}}}[1m])))',"p50 {{instance}}"),
    (f'histogram_quantile(0.99, sum by (le, instance) (rate(sampan_sync_round_seconds_bucket{{{sel}}}[1m])))',"p99 {{instance}}")], unit="s", desc="One group-commit round: the syncs of every log with unsynced writes on a shard.")
panel("Sync rounds and fsyncs per second", [
    (f'sum by (instance) (rate(sampan_sync_rounds_total{{{sel}}}[1m]))',"rounds {{instance}}"),
    (f'sum by (instance) (rate(sampan_fsyncs_total{{{sel}}}[1m]))',"fsyncs {{instance}}")], unit="ops")
panel("Elections and leader changes", [
    (f'sum by (instance) (increase(sampan_elections_total{{{sel}}}[5m]))',"elections {{instance}}"),
    (f'sum by (instance) (increase(sampan_leader_changes_total{{{sel}}}[5m]))',"leader changes {{instance}}")], desc="Per 5 minutes. Steady elections mean a flapping network or a stalled node.")
panel("Apply lag by group", [(f'max by (group) (sampan_group_apply_lag{{{sel}}})',"group {{group}}")], desc="Entries committed but not applied yet, worst node.")
panel("Log size by group", [(f'max by (group) (sampan_group_log_bytes{{{sel}}})',"group {{group}}")], unit="bytes", desc="Bytes of log a group keeps on disk, largest replica. Falls after each snapshot once followers no longer need the entries.")
panel("Snapshot write time by group", [(f'max by (group) (sampan_group_snapshot_seconds{{{sel}}})',"group {{group}}")], unit="s", desc="How long writing the last snapshot took, slowest replica. Applies go on meanwhile; a long write means a large state or a slow disk.")
panel("Keys and sessions by group", [
    (f'max by (group) (sampan_group_keys{{{sel}}})',"keys, group {{group}}"),
    (f'max by (group) (sampan_group_sessions{{{sel}}})',"sessions, group {{group}}")], desc="Keys held (expired ones not yet removed count) and exactly-once client sessions remembered.")
panel("Follower lag (on leaders)", [(f'max by (group, node) (sampan_follower_lag{{{sel}}})',"group {{group}} node {{node}}")], desc="Entries a follower lacks, as its leader sees it.")
panel("Peer round trip", [(f'max by (instance, peer) (sampan_peer_rtt_seconds{{{sel}}})',"{{instance}} to {{peer}}")], unit="s", desc="The last keepalive's round trip on each node-to-node link.")
panel("Peer last contact", [(f'max by (instance, peer) (sampan_peer_silent_seconds{{{sel}}})',"{{instance}} from {{peer}}")], unit="s", desc="Time since each peer last answered a keepalive: grows from the moment a peer dies or is cut off.")
panel("Replication traffic", [
    (f'sum by (instance, peer) (rate(sampan_peer_sent_bytes_total{{{sel}}}[1m]))',"{{instance}} to {{peer}}"),
    (f'sum by (instance, peer) (rate(sampan_peer_received_bytes_total{{{sel}}}[1m]))',"{{instance}} from {{peer}}")], unit="Bps")
panel("Raft messages dropped", [(f'sum by (instance) (rate(sampan_messages_dropped_total{{{sel}}}[1m]))',"{{instance}}")], unit="ops", desc="Not sent: peer unreachable or its queue full. Raft resends.")
panel("Redis clients", [
    (f'sum by (instance) (sampan_redis_connected_clients{{{sel}}})',"connected {{instance}}"),
    (f'sum by (instance) (sampan_redis_blocked_clients{{{sel}}})',"blocked {{instance}}")])
panel("Redis commands per second", [(f'sum by (command) (rate(sampan_redis_commands_total{{{sel}}}[1m]))',"{{command}}")], unit="ops")
panel("Redis error replies per second", [(f'sum by (code) (rate(sampan_redis_errors_total{{{sel}}}[1m]))',"{{code}}")], unit="ops", desc="By error code, as INFO errorstats counts them.")
panel("Refused connections and failed authentications", [
    (f'sum by (instance) (rate(sampan_connections_refused_total{{{sel}}}[5m]))',"refused (limits) {{instance}}"),
    (f'sum by (instance) (rate(sampan_auth_failures_total{{{sel}}}[5m]))',"auth failures {{instance}}"),
    (f'sum by (instance) (rate(sampan_redis_rejected_connections_total{{{sel}}}[5m]))',"redis maxclients {{instance}}")], unit="ops")
dash={"title":"Sampan","uid":"sampan-overview","schemaVersion":39,"version":1,"editable":True,
 "time":{"from":"now-1h","to":"now"},"refresh":"10s","tags":["sampan","raft"],
 "templating":{"list":[
   {"name":"datasource","type":"datasource","query":"prometheus","label":"Prometheus"},
   {"name":"instance","type":"query","label":"Node","datasource":{"type":"prometheus","uid":"${datasource}"},
    "query":{"query":"label_values(sampan_groups, instance)","refId":"instance"},"definition":"label_values(sampan_groups, instance)",
    "includeAll":True,"multi":True,"allValue":".*","current":{"text":"All","value":"$__all"},"refresh":2}]},
 "panels":panels}
import os
json.dump(dash, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampan.json"), "w"), indent=2)
print(len(panels))
