using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Gateway.Node.Replay;

namespace Gateway.Cli.Commands;

/// <summary>
/// `gateway replay CAPTURE [--policy PATH --endpoints FILE] [--mode plain|overlay] [--workers N]
/// [--loops K] [--encryption wireguard|ipsec] [--write OUT.pcap] [--keylog FILE | --esp-sa FILE] [--json]`: pushes every packet of a capture through
/// the daemon's pipeline between two in-memory nodes and reports rates, verdicts, per-stage cost,
/// allocation, and the bare AEAD rate measured in the same run. Exit 0 = every forwarded packet
/// round-tripped byte for byte, 1 = some did not, 2 = bad arguments or unreadable input.
/// </summary>
internal static class ReplayCommand
{
    public static Command Create()
    {
        var capture = new Argument<string>("CAPTURE") { Description = "pcap or pcapng file of IP traffic (Ethernet, Linux cooked or raw IP)" };
        var policy = new Option<string>("--policy") { HelpName = "PATH", Description = "CiliumNetworkPolicy/NetworkPolicy YAML file or directory (overlay mode)" };
        var endpoints = new Option<string>("--endpoints") { HelpName = "FILE", Description = "Endpoints YAML (name, namespace, ips, labels): gives the capture's addresses their identities (overlay mode)" };
        var mode = new Option<string>("--mode") { HelpName = "plain|overlay", Description = "plain (WireGuard only) or overlay (policy + VXLAN + WireGuard). Default: overlay with --endpoints, else plain" };
        var workers = new Option<int>("--workers") { HelpName = "N", Description = "Independent node pairs, one thread each, over a partition of the flows", DefaultValueFactory = _ => 1 };
        var loops = new Option<int>("--loops") { HelpName = "K", Description = "Measured passes over the capture (after one warm-up pass)", DefaultValueFactory = _ => 1 };
        var write = new Option<string>("--write") { HelpName = "OUT.pcap", Description = "Write the sealed underlay traffic (handshake and the warm-up pass) as an Ethernet pcap (192.0.2.1 <-> 192.0.2.2, UDP 51871)" };
        var keylog = new Option<string>("--keylog") { HelpName = "FILE", Description = "Write a Wireshark WireGuard key log (wg.keylog_file, file mode 0600): both nodes' static and handshake ephemeral private keys, so Wireshark/tshark decrypts the --write capture, transport data included; see docs/replay.md" };
        var json = new Option<bool>("--json") { Description = "Print the report as one JSON document" };
        var encryption = new Option<string>("--encryption") { HelpName = "wireguard|ipsec", Description = "Encryption between the nodes: wireguard (default) or ipsec (ESP tunnel mode, rfc4106(gcm(aes)), ESN, Cilium-style keys); see docs/ipsec.md" };
        var espSa = new Option<string>("--esp-sa") { HelpName = "FILE", Description = "With --encryption ipsec: write Wireshark's esp_sa table (file mode 0600) holding both directions' SA keys, so tshark decrypts the --write capture; default OUT.pcap.esp_sa when --write is given" };

        var command = new Command("replay", "Replay a capture through the node pipeline in memory and measure it (no TUN, no sockets, no root)");
        command.Arguments.Add(capture);
        foreach (var option in new Option[] { policy, endpoints, mode, workers, loops, encryption, write, keylog, espSa, json }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            string? endpointsPath = parse.GetValue(endpoints);
            string? policyPath = parse.GetValue(policy);
            var replayMode = parse.GetValue(mode) switch
            {
                null => endpointsPath is null ? ReplayMode.Plain : ReplayMode.Overlay,
                "plain" => ReplayMode.Plain,
                "overlay" => ReplayMode.Overlay,
                var other => throw Usage($"--mode: '{other}' is not plain or overlay"),
            };
            if (replayMode == ReplayMode.Overlay && endpointsPath is null) throw Usage("--mode overlay needs --endpoints FILE");
            if (replayMode == ReplayMode.Plain && (endpointsPath ?? policyPath) is not null) throw Usage("--policy and --endpoints apply to --mode overlay only");
            if (policyPath is not null && endpointsPath is null) throw Usage("--policy needs --endpoints FILE");
            int workerCount = parse.GetValue(workers), loopCount = parse.GetValue(loops);
            if (workerCount is < 1 or > 256) throw Usage("--workers must be between 1 and 256");
            if (loopCount is < 1 or > 1_000_000) throw Usage("--loops must be between 1 and 1000000");
            string? writePath = parse.GetValue(write), keylogPath = parse.GetValue(keylog), espSaPath = parse.GetValue(espSa);
            var replayEncryption = parse.GetValue(encryption) switch
            {
                null or "wireguard" => ReplayEncryption.WireGuard,
                "ipsec" => ReplayEncryption.Ipsec,
                var other => throw Usage($"--encryption: '{other}' is not wireguard or ipsec"),
            };
            if (replayEncryption == ReplayEncryption.Ipsec)
            {
                if (keylogPath is not null) throw Usage("--keylog is WireGuard's key log; with --encryption ipsec use --esp-sa FILE");
                if (writePath is not null) espSaPath ??= writePath + ".esp_sa";
            }
            else if (espSaPath is not null)
            {
                throw Usage("--esp-sa needs --encryption ipsec");
            }
            if ((writePath ?? keylogPath ?? espSaPath) is not null && workerCount != 1) throw Usage("--write, --keylog and --esp-sa need --workers 1 (one session to record)");
            if (espSaPath is not null && Path.GetDirectoryName(Path.GetFullPath(espSaPath)) is { } saDir && !Directory.Exists(saDir))
                throw Usage($"--esp-sa: directory '{saDir}' does not exist");

            if (keylogPath is not null && Path.GetDirectoryName(Path.GetFullPath(keylogPath)) is { } keyDir && !Directory.Exists(keyDir))
                throw Usage($"--keylog: directory '{keyDir}' does not exist");
            ReplayCapture loaded;
            ReplayPolicy? loadedPolicy = null;
            try
            {
                loaded = ReplayCapture.Load(parse.GetValue(capture)!);
                if (replayMode == ReplayMode.Overlay) loadedPolicy = ReplayPolicy.Load(endpointsPath!, policyPath);
            }
            catch (ReplayInputException e)
            {
                throw Usage(e.Message);
            }
            UnderlayCaptureWriter? writer = null;
            try
            {
                writer = writePath is null ? null : new UnderlayCaptureWriter(writePath);
            }
            catch (IOException e)
            {
                throw Usage($"--write: {e.Message}");
            }
            catch (UnauthorizedAccessException e)
            {
                throw Usage($"--write: {e.Message}");
            }
            ReplayReport report;
            using (writer)
            using (var bar = new ProgressBar())
            {
                try
                {
                    report = ReplayRunner.Run(loaded, new ReplayOptions
                    {
                        Mode = replayMode,
                        Encryption = replayEncryption,
                        EspSaPath = espSaPath,
                        Workers = workerCount,
                        Loops = loopCount,
                        Policy = loadedPolicy,
                        Sink = writer,
                        KeyLogPath = keylogPath,
                    }, bar.Update);
                }
                catch (InvalidOperationException e) when (e.InnerException is IOException or UnauthorizedAccessException)
                {
                    throw Usage(e.InnerException.Message);
                }
            }
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json)) output.WriteLine(ToJson(report, writer?.Frames));
            else WriteText(output, report, writePath, writer?.Frames, keylogPath, espSaPath);
            return report.Mismatched == 0 && report.NotSent == 0 ? 0 : 1;
        });
        return command;
    }

    private static CliException Usage(string message) => new($"replay: {message}", CliRunner.UsageExitCode);

    private static string ToJson(ReplayReport r, long? framesWritten)
    {
        var doc = new Dictionary<string, object?>
        {
            ["mode"] = r.Mode.ToString().ToLowerInvariant(),
            ["encryption"] = r.Encryption.ToString().ToLowerInvariant(),
            ["workers"] = r.Workers,
            ["loops"] = r.Loops,
            ["capture_packets"] = r.CapturePackets,
            ["capture_bytes"] = r.CaptureBytes,
            ["skipped_frames"] = r.SkippedFrames,
            ["flows"] = r.Flows,
            ["packets"] = r.Packets,
            ["bytes"] = r.Bytes,
            ["seconds"] = r.Seconds,
            ["mpps"] = r.Mpps,
            ["gbps"] = r.Gbps,
            ["ns_per_packet"] = r.NsPerPacket,
            ["round_tripped"] = r.RoundTripped,
            ["mismatched"] = r.Mismatched,
            ["not_sent"] = r.NotSent,
            ["dropped"] = r.Dropped,
            ["drops"] = r.Drops,
            ["control_datagrams"] = r.ControlDatagrams,
            ["ephemeral_keys_logged"] = r.EphemeralKeys,
            ["stage_ns"] = r.StageNs,
            ["sampled_packets"] = r.SampledPackets,
            ["allocated_bytes"] = r.AllocatedBytes,
            ["allocated_bytes_per_packet"] = r.AllocatedBytesPerPacket,
            ["bare_seal_ns_per_packet"] = r.BareSealNsPerPacket,
            ["bare_seal_open_ns_per_packet"] = r.BareSealOpenNsPerPacket,
            ["bare_seal_mpps"] = r.BareSealMpps,
            ["ratio_to_seal"] = r.RatioToSeal,
            ["ratio_to_seal_open"] = r.RatioToSealOpen,
            ["cpu_ns_per_packet"] = r.CpuNsPerPacket,
            ["bare_seal_cpu_ns_per_packet"] = r.BareSealCpuNsPerPacket,
            ["bare_seal_open_cpu_ns_per_packet"] = r.BareSealOpenCpuNsPerPacket,
            ["cpu_ratio_to_seal_open"] = r.CpuRatioToSealOpen,
            ["sender_ratio_to_seal"] = r.SenderRatioToSeal,
            ["frames_written"] = framesWritten,
        };
        return JsonSerializer.Serialize(doc);
    }

    private static void WriteText(TextWriter o, ReplayReport r, string? writePath, long? frames, string? keylogPath, string? espSaPath)
    {
        var c = CultureInfo.InvariantCulture;
        bool ipsec = r.Encryption == ReplayEncryption.Ipsec;
        o.WriteLine(string.Format(c, "replay ({0}{1}, {2} worker(s), {3} loop(s)): {4} packets, {5} flows, {6} bytes per pass ({7} frame(s) skipped)",
            r.Mode.ToString().ToLowerInvariant(), ipsec ? ", ipsec" : "", r.Workers, r.Loops, r.CapturePackets, r.Flows, r.CaptureBytes, r.SkippedFrames));
        o.WriteLine(string.Format(c, "measured: {0} packets, {1} bytes in {2:F3} s = {3:F3} Mpps, {4:F3} Gbit/s, {5:F0} ns/packet/worker",
            r.Packets, r.Bytes, r.Seconds, r.Mpps, r.Gbps, r.NsPerPacket));
        o.WriteLine(string.Format(c, "verdicts: {0} round-tripped byte for byte, {1} dropped, {2} mismatched, {3} not sent; {4} handshake-layer datagrams",
            r.RoundTripped, r.Dropped, r.Mismatched, r.NotSent, r.ControlDatagrams));
        foreach (var (reason, count) in r.Drops) o.WriteLine(string.Format(c, "  drop {0}: {1}", reason, count));
        o.WriteLine(string.Format(c, "stages (mean ns/packet over the 1-in-8 sample, {0} packets):", r.SampledPackets));
        foreach (var (stage, ns) in r.StageNs) o.WriteLine(string.Format(c, "  {0,-20} {1,8:F0}", stage, ns));
        o.WriteLine(string.Format(c, "allocated: {0} bytes in the measured loops = {1:F3} B/packet", r.AllocatedBytes, r.AllocatedBytesPerPacket));
        o.WriteLine(string.Format(c, "bare {3}, same sizes, same run: seal {0:F0} ns/packet ({1:F3} Mpps), seal+open {2:F0} ns/packet",
            r.BareSealNsPerPacket, r.BareSealMpps, r.BareSealOpenNsPerPacket, ipsec ? "AES-GCM (rfc4106)" : "ChaCha20-Poly1305"));
        o.WriteLine(string.Format(c, "pipeline / bare: {0:P1} of seal, {1:P1} of seal+open (like for like: one thread seals and opens); sender side {2:P1} of seal",
            r.RatioToSeal, r.RatioToSealOpen, r.SenderRatioToSeal));
        if (r.CpuNsPerPacket > 0)
        {
            o.WriteLine(string.Format(c, "in thread CPU time (leaves out the time other processes held the core): pipeline {0:F0} ns/packet, bare seal {1:F0}, seal+open {2:F0}: {3:P1} of seal+open",
                r.CpuNsPerPacket, r.BareSealCpuNsPerPacket, r.BareSealOpenCpuNsPerPacket, r.CpuRatioToSealOpen));
        }
        if (writePath is not null) o.WriteLine($"wrote {frames} underlay frame(s) to {writePath}");
        if (espSaPath is not null) o.WriteLine($"wrote both directions' ESP SA keys to {espSaPath} (Wireshark esp_sa table; docs/ipsec.md shows the tshark command)");
        if (keylogPath is not null)
        {
            o.WriteLine(r.EphemeralKeys > 0
                ? $"wrote static and {r.EphemeralKeys} ephemeral key(s) to {keylogPath}: Wireshark can decrypt the transport data"
                : $"wrote static keys only to {keylogPath}: no ephemeral key was visible, so transport data stays opaque to Wireshark (docs/replay.md)");
        }
    }

    /// <summary>A one-line progress bar on stderr, shown only on a terminal and only once a run has taken over a second.</summary>
    private sealed class ProgressBar : IDisposable
    {
        private readonly bool _enabled = !Console.IsOutputRedirected && !Console.IsErrorRedirected;
        private readonly long _start = Stopwatch.GetTimestamp();
        private bool _shown;

        public void Update(long done, long total)
        {
            if (!_enabled || Stopwatch.GetElapsedTime(_start).TotalSeconds < 1 || total <= 0) return;
            _shown = true;
            int width = 40, filled = (int)(width * Math.Min(done, total) / total);
            Console.Error.Write($"\r[{new string('#', filled)}{new string(' ', width - filled)}] {100 * done / total,3}%");
        }

        public void Dispose()
        {
            if (_shown) Console.Error.Write("\r" + new string(' ', 50) + "\r");
        }
    }
}
