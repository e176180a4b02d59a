/** The text of `hsync --help`: every form of the command line, every option, and the exit codes. */

/** Usage text of `hsync --help`. */
export const CLIENT_USAGE = `Usage:
  hsync -i REMOTE_PATH [-o LOCAL_PATH] [-host IP] [-p PORT] [options]
  hsync HOST[:PORT]:/remote/path... LOCAL_PATH [options]
  hsync LOCAL_PATH... HOST[:PORT]:/remote/path [options]
  hsync --push -i LOCAL_PATH -o REMOTE_PATH [-host IP] [-p PORT] [options]
  hsync echo-config [-c INI]
  hsync keygen [--force] [-c INI]
  hsync keygen --public KEY_FILE

Pull a file or a directory tree from hsyncd, or push local files and trees to
it, fast, resumable and verified. An interrupted pull (Ctrl-C, a kill, a crash,
a broken network) keeps its data in NAME.hsync-part with a journal beside it
(NAME.hsync-journal); running the same command again fetches only the missing
bytes, or starts a file over when it changed on the server. A push is resumed
the same way from what the server holds. A file gets its final name only when
complete.

Options:
  -i, --input PATH        remote path (absolute, on the server; repeatable:
                          each goes inside the destination under its own
                          name); *, ?, [...] and ** in it are expanded on
                          the server
  -o, --output PATH       local destination (default: the current directory):
                          a path ending in / gets the remote entry inside it;
                          a remote file also goes inside an existing
                          directory; a remote directory is otherwise copied
                          to PATH itself (so reruns sync the same copy)
  -host, --host-ip IP     server address (default from hsync.ini, 127.0.0.1)
  -p, --port PORT         server port (default 10808)
  -n, --parallel N        files transferred in parallel (default 8; not
                          rsync's --dry-run; --num N is the old tool's name)
  -c, --config INI        configuration file (see hsync echo-config)
      --sync              pull, then follow remote changes ([hsync] section;
                          Host_ip, Port, Tls, CA_file, Identity_file also
                          from [hscp] unless [hsync] sets them)
      --from-now          with --sync: skip existing content, follow new data
                          (also accepted as --ignore-exists)
      --verify            after each file, compare its SHA-256 with the
                          server's; parts that differ are fetched once more,
                          then the file fails (it never gets its final name)
      --checksum          decide "identical, skip" by SHA-256 from the server
                          instead of size + modification time
      --include GLOB      transfer only matching relative paths (repeatable);
                          a pattern without / matches a name at any depth,
                          a leading / anchors it at the transfer root, a
                          trailing / matches directories only, ** crosses
                          directories; a match on a directory counts for
                          everything below it
      --exclude GLOB      skip matching relative paths (repeatable)
      --include-regex RE  like --include with a JavaScript regular expression
                          searched in the relative path (repeatable)
      --exclude-regex RE  like --exclude with a regular expression
      --include-from FILE --include for each line of FILE (- for stdin)
      --exclude-from FILE --exclude for each line of FILE
      --files-from FILE   only the relative paths listed in FILE, one per
                          line (- for stdin); a directory brings all below it
      --delete            after a transfer without failures, delete what the
                          destination has and the source does not (only
                          inside the destination, never through a link,
                          never what --include/--exclude leave out; on a
                          push, on the server, with the same rights as a
                          write)
      --max-delete N      with --delete: more than N deletions means none,
                          one line and exit code 2
      --dry-run           list, compare and print what would be transferred,
                          skipped and deleted; write nothing; exit 0 (-n
                          keeps its old meaning: files in parallel)
  -P, --preserve          set permission bits exactly as the source has them
                          (without -P: the source's bits masked by the
                          receiving side's umask, as cp and scp do; mtime is
                          always kept); setuid, setgid, sticky and
                          write-for-others bits sent by the server are
                          dropped, and the destination directory itself is
                          never changed. (-P is not rsync's --partial: hsync
                          always keeps partial files.)
      --special-modes     with -P: apply those bits too (trust the server)
  -a, --archive           -P -l -H -S: a faithful copy of the tree
  -l, --links             copy symbolic links as links (without it a link is
                          followed when it leads inside the served paths)
  -H, --hard-links        names of one file stay names of one file
  -S, --sparse            holes stay holes: long zero runs are neither sent
                          nor written
      --unsafe-links      with -l: also create links whose target is absolute
                          or leads outside the copy (refused by default, each
                          named; a push's server refuses them always)
      --push              push: -i names the local path, -o the remote one
                          (the side written HOST:/path is the remote one);
                          a remote path ending in /, an existing remote
                          directory or several local paths get each local
                          path inside it under its own name
      --max-entries N     stop with exit code 3 when a listing holds more
                          than N entries (default 10000000)
      --bwlimit RATE      at most RATE bytes per second over all connections
                          of the run, both directions, --sync too (500K,
                          1.5M, 10M: K, M, G are powers of 1024; a plain
                          number is bytes, not rsync's KiB)
      --tls               use HTTPS (or Tls = yes in hsync.ini)
      --no-wait           another hsync pulling into the same destination
                          directory, or pushing into the same server
                          destination, stops this run with exit code 1
                          instead of making it wait for the other to finish
      --public KEY_FILE   with keygen: print the Authorized_keys line of an
                          existing OpenSSH ed25519 key (private or .pub)

HOST may name a [host:NAME] section of hsync.ini (Host_ip, Port, Tls,
CA_file, Identity_file, ...), used as ssh uses a Host alias. Requests are
signed with Identity_file (an hsync keygen key or an OpenSSH ed25519 key),
else $HSYNC_DIR/id_ed25519, else the ed25519 keys of ssh-agent
(SSH_AUTH_SOCK).
      --quiet             print nothing on success (no bar, no summary);
                          warnings, errors and what failed still print
      --json              one JSON object per line on stdout (nothing else
                          there): type "file" per entry (path, bytes, status
                          transferred|skipped|failed|not_transferred|deleted,
                          reason), "warning", "plan" (--dry-run), with --sync
                          "append" (path, offset, bytes), "refetch" and
                          "file" status "new"; "summary" last (totals,
                          elapsed_ms, exit_code, error when stopped)
      --debug             stack traces and request details on errors
  -h, --help              this text
      --version           print the version

Redirects are never followed: a server answering one stops the run (exit 3).

Exit codes:
  0    success
  1    usage or configuration error
  2    some entries failed or were not transferred (each named, or counted
       when the server's rules withhold them); the rest completed
  3    the server answered and refused: path missing, key or path refused,
       a redirect, more than --max-entries entries (retrying will not help)
  4    the server could not be reached: connection refused, unknown host,
       TLS, timeout, connection lost, not HTTP, not hsyncd (retry later)
  130  interrupted (Ctrl-C, SIGTERM)`;
