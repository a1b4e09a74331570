# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sipban_global_optspecs
    string join \n config= v h/help V/version
end

function __fish_sipban_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sipban_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sipban_using_subcommand
    set -l cmd (__fish_sipban_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sipban -n "__fish_sipban_needs_command" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_needs_command" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_needs_command" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_needs_command" -s V -l version -d 'Print version'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "sync" -d 'Gather, decide and apply once (or, with --dry-run, print the plan and change nothing)'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "config" -d 'Configuration commands'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "list" -d 'List the entries a sync would hold in the sets, from the saved state'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "export" -d 'Write this host\'s own detections (the detectors\' entries the sets hold, with their remaining TTL) as a feed another sipban can read; atomically with --out'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "explain" -d 'Say why an address (or anything in a prefix) is or is not blocked'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "check" -d 'Ask APIBAN (when configured) and the local state whether an address is listed'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "scan" -d 'Scan Asterisk logs once, in the spirit of fail2ban-regex: matched lines per rule, per-address counts, attributed and unattributed scanner timeouts. Changes nothing'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "feeds" -d 'Show the built-in feed catalogue'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "generate-assets" -d 'Write the man page (sipban.1) and the bash, zsh and fish completions into DIR (the package\'s copies in packaging/generated/ are made with this)'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "run" -d 'Run as a daemon: scheduled syncs (daemon.sync_schedule, UTC), real-time Asterisk log detections, SIGHUP reloads the config, SIGTERM stops. Holds the run lock throughout'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "status" -d 'Last run, per-source freshness and counts, set sizes against caps, manual bans'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "ban" -d 'Ban an address or prefix by hand (pinned: above every source\'s priority)'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "unban" -d 'Remove an address from the sets and keep it out until a source lists it afresh'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "report" -d 'Upstream reporting (AbuseIPDB, webhook)'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "restore" -d 'Rebuild both sets from the saved state, with no network (what sipban-restore.service runs at boot), then put back the firewall rules `firewall install` recorded'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "firewall" -d 'The firewall rules that drop traffic from the sets'
complete -c sipban -n "__fish_sipban_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand sync" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand sync" -l dry-run -d 'Print the plan; write nothing to the kernel or the state. Works without root'
complete -c sipban -n "__fish_sipban_using_subcommand sync" -l json -d 'Machine-readable output'
complete -c sipban -n "__fish_sipban_using_subcommand sync" -l retry-now -l force-download -d 'Download every feed now, ignoring its interval and any back-off after failures (this run only)'
complete -c sipban -n "__fish_sipban_using_subcommand sync" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand sync" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand config; and not __fish_seen_subcommand_from check help" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand config; and not __fish_seen_subcommand_from check help" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Validate the config and print the resolved settings'
complete -c sipban -n "__fish_sipban_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand config; and __fish_seen_subcommand_from check" -l json
complete -c sipban -n "__fish_sipban_using_subcommand config; and __fish_seen_subcommand_from check" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the config and print the resolved settings'
complete -c sipban -n "__fish_sipban_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand list" -l source -d 'Only entries listed by this source' -r
complete -c sipban -n "__fish_sipban_using_subcommand list" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand list" -l json
complete -c sipban -n "__fish_sipban_using_subcommand list" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand list" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand export" -l format -d 'plain: one address or prefix per line after `#` header lines; json: address, reason, first seen and expiry of each' -r -f -a "plain\t'One address or prefix per line, after `#` header lines'
json\t'`{"generated": ..., "entries": [{address, reason, first_seen, expires}]}`'"
complete -c sipban -n "__fish_sipban_using_subcommand export" -l out -d 'Write this file (replaced atomically) instead of standard output' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand export" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand export" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sipban -n "__fish_sipban_using_subcommand explain" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand explain" -l json
complete -c sipban -n "__fish_sipban_using_subcommand explain" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand explain" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand check" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand check" -l json
complete -c sipban -n "__fish_sipban_using_subcommand check" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand check" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l full -d 'The full log with SIP debug dumps, for Call-ID correlation of scanner timeouts' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l security-services -d 'Whose security events count, comma-separated (see `asterisk.security_event_services`; default PJSIP)' -r
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l pcap -d 'A packet capture (pcap or pcapng: SIP in UDP/TCP, HEP v3 in UDP) read through the SIP wire detector; the files, if any, are Asterisk logs whose IP-less scanner timeouts are attributed through the Call-IDs the capture saw' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l json
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l verbose -d 'Also list lines that look like failures but matched no rule, and refused lines'
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l aggressive -d 'Count the opt-in security events too (see `asterisk.aggressive`)'
complete -c sipban -n "__fish_sipban_using_subcommand scan" -l kernel -d 'The files are kernel logs (kern.log, syslog, `journalctl -k -o short-iso` output): list every inbound TCP/UDP packet per source address, with the port catalogue\'s weights and the threshold it crossed (scored with the config\'s `kernel_log`, if any). With `--verbose`, also samples of unparsed lines that look like firewall lines'
complete -c sipban -n "__fish_sipban_using_subcommand scan" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand scan" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand feeds" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand feeds" -l json
complete -c sipban -n "__fish_sipban_using_subcommand feeds" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand feeds" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand generate-assets" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand generate-assets" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand generate-assets" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand run" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand run" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand run" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand status" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand status" -l json
complete -c sipban -n "__fish_sipban_using_subcommand status" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand status" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand ban" -l ttl -d 'How long (e.g. 12h, 30d); default a year' -r
complete -c sipban -n "__fish_sipban_using_subcommand ban" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand ban" -l json
complete -c sipban -n "__fish_sipban_using_subcommand ban" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand ban" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand unban" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand unban" -l allow -d 'Also add it to the persistent manual allowlist (never banned again)'
complete -c sipban -n "__fish_sipban_using_subcommand unban" -l json
complete -c sipban -n "__fish_sipban_using_subcommand unban" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand unban" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand report; and not __fish_seen_subcommand_from status help" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand report; and not __fish_seen_subcommand_from status help" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand report; and not __fish_seen_subcommand_from status help" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand report; and not __fish_seen_subcommand_from status help" -f -a "status" -d 'Queue length, reports sent today, last errors (from the saved state; changes nothing)'
complete -c sipban -n "__fish_sipban_using_subcommand report; and not __fish_seen_subcommand_from status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand report; and __fish_seen_subcommand_from status" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand report; and __fish_seen_subcommand_from status" -l json
complete -c sipban -n "__fish_sipban_using_subcommand report; and __fish_seen_subcommand_from status" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand report; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand report; and __fish_seen_subcommand_from help" -f -a "status" -d 'Queue length, reports sent today, last errors (from the saved state; changes nothing)'
complete -c sipban -n "__fish_sipban_using_subcommand report; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand restore" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand restore" -l json
complete -c sipban -n "__fish_sipban_using_subcommand restore" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand restore" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -f -a "log-rule" -d 'Print (or with --apply install, idempotently) a rate-limited LOG rule for new inbound connections to the port catalogue\'s weighted ports, for the `kernel_log` detector'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -f -a "install" -d 'Insert one DROP rule per family first in INPUT (or raw PREROUTING with --raw), unless it is already there; creates missing sets empty'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -f -a "remove" -d 'Delete sipban\'s rules in INPUT and raw PREROUTING (and the empty nf_tables chains install created), with the backend install recorded (else --backend); keeps the sets'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -f -a "check" -d 'Check that the rules `firewall install` recorded are still in place (another tool may have flushed the ruleset); with --repair, put missing ones back. Exit 1 when rules are missing and were not put back. Every sync does the same with --repair'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -f -a "status" -d 'Show where sipban\'s rules are and whether anything accepts before them'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and not __fish_seen_subcommand_from log-rule install remove check status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from log-rule" -l backend -d 'iptables (also ip6tables) or nft; default: iptables when installed, else nft' -r -f -a "iptables\t''
nft\t''"
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from log-rule" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from log-rule" -l apply -d 'Install the rule now (root)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from log-rule" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from log-rule" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -l backend -d 'iptables: `iptables`/`ip6tables` as the system selected them; nft: `iptables-nft` (the rule lands in the nftables ruleset as an xt set match)' -r
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -l raw -d 'Use the raw table\'s PREROUTING chain (before connection tracking) instead of INPUT'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -l dry-run -d 'Print the commands that would run; change nothing'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -l json
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -l backend -d 'iptables: `iptables`/`ip6tables` as the system selected them; nft: `iptables-nft` (the rule lands in the nftables ruleset as an xt set match)' -r
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -l raw -d 'Use the raw table\'s PREROUTING chain (before connection tracking) instead of INPUT'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -l dry-run -d 'Print the commands that would run; change nothing'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -l json
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from check" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from check" -l repair -d 'Put missing rules back (as install does, with the recorded backend and place)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from check" -l json
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from check" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from status" -l backend -d 'Which tools to read (default: what install recorded, else iptables)' -r
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from status" -l config -d 'Config file' -r -F
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from status" -l json
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from status" -s v -d 'More log output on stderr (-v info, -vv debug, with per-phase timings)'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from help" -f -a "log-rule" -d 'Print (or with --apply install, idempotently) a rate-limited LOG rule for new inbound connections to the port catalogue\'s weighted ports, for the `kernel_log` detector'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from help" -f -a "install" -d 'Insert one DROP rule per family first in INPUT (or raw PREROUTING with --raw), unless it is already there; creates missing sets empty'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Delete sipban\'s rules in INPUT and raw PREROUTING (and the empty nf_tables chains install created), with the backend install recorded (else --backend); keeps the sets'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check that the rules `firewall install` recorded are still in place (another tool may have flushed the ruleset); with --repair, put missing ones back. Exit 1 when rules are missing and were not put back. Every sync does the same with --repair'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show where sipban\'s rules are and whether anything accepts before them'
complete -c sipban -n "__fish_sipban_using_subcommand firewall; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "sync" -d 'Gather, decide and apply once (or, with --dry-run, print the plan and change nothing)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "config" -d 'Configuration commands'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "list" -d 'List the entries a sync would hold in the sets, from the saved state'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "export" -d 'Write this host\'s own detections (the detectors\' entries the sets hold, with their remaining TTL) as a feed another sipban can read; atomically with --out'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "explain" -d 'Say why an address (or anything in a prefix) is or is not blocked'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "check" -d 'Ask APIBAN (when configured) and the local state whether an address is listed'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "scan" -d 'Scan Asterisk logs once, in the spirit of fail2ban-regex: matched lines per rule, per-address counts, attributed and unattributed scanner timeouts. Changes nothing'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "feeds" -d 'Show the built-in feed catalogue'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "generate-assets" -d 'Write the man page (sipban.1) and the bash, zsh and fish completions into DIR (the package\'s copies in packaging/generated/ are made with this)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "run" -d 'Run as a daemon: scheduled syncs (daemon.sync_schedule, UTC), real-time Asterisk log detections, SIGHUP reloads the config, SIGTERM stops. Holds the run lock throughout'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "status" -d 'Last run, per-source freshness and counts, set sizes against caps, manual bans'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "ban" -d 'Ban an address or prefix by hand (pinned: above every source\'s priority)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "unban" -d 'Remove an address from the sets and keep it out until a source lists it afresh'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "report" -d 'Upstream reporting (AbuseIPDB, webhook)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "restore" -d 'Rebuild both sets from the saved state, with no network (what sipban-restore.service runs at boot), then put back the firewall rules `firewall install` recorded'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "firewall" -d 'The firewall rules that drop traffic from the sets'
complete -c sipban -n "__fish_sipban_using_subcommand help; and not __fish_seen_subcommand_from sync config list export explain check scan feeds generate-assets run status ban unban report restore firewall help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Validate the config and print the resolved settings'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from report" -f -a "status" -d 'Queue length, reports sent today, last errors (from the saved state; changes nothing)'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from firewall" -f -a "log-rule" -d 'Print (or with --apply install, idempotently) a rate-limited LOG rule for new inbound connections to the port catalogue\'s weighted ports, for the `kernel_log` detector'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from firewall" -f -a "install" -d 'Insert one DROP rule per family first in INPUT (or raw PREROUTING with --raw), unless it is already there; creates missing sets empty'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from firewall" -f -a "remove" -d 'Delete sipban\'s rules in INPUT and raw PREROUTING (and the empty nf_tables chains install created), with the backend install recorded (else --backend); keeps the sets'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from firewall" -f -a "check" -d 'Check that the rules `firewall install` recorded are still in place (another tool may have flushed the ruleset); with --repair, put missing ones back. Exit 1 when rules are missing and were not put back. Every sync does the same with --repair'
complete -c sipban -n "__fish_sipban_using_subcommand help; and __fish_seen_subcommand_from firewall" -f -a "status" -d 'Show where sipban\'s rules are and whether anything accepts before them'
