using System.Diagnostics;
using Gateway.Datapath.Audit;
using Gateway.Node.Replay;

namespace Gateway.Node.Tests.Replay;

public sealed class ReplayRunnerTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "gw-replay-run-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, ReplayFixtureGenerator.Expected> _expected;

    public ReplayRunnerTests()
    {
        // The expectations come from the generator; the captures replayed are the checked-in ones
        // (ReplayFixtureTests keeps the two identical).
        _expected = ReplayFixtureGenerator.WriteAll(_tmp);
    }

    public void Dispose()
    {
        if (Directory.Exists(_tmp)) Directory.Delete(_tmp, recursive: true);
    }

    private static string Fixture(string name) => Path.Combine(ReplayFixtureTests.FixtureDirectory, name);

    private static ReplayPolicy DemoPolicy() => ReplayPolicy.Load(Fixture("endpoints.yaml"), Fixture("policy.yaml"));

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Overlay_replay_round_trips_every_allowed_packet_and_drops_the_rest_by_policy(int workers)
    {
        var expected = _expected[ReplayFixtureGenerator.Imix];
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        const int loops = 3;
        var report = ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Overlay, Policy = DemoPolicy(), Loops = loops, Workers = workers });

        Assert.Equal((long)expected.Packets * loops, report.Packets);
        Assert.Equal((long)expected.Allowed * loops, report.RoundTripped);
        Assert.Equal(0, report.Mismatched);
        Assert.Equal(0, report.NotSent);
        // frontend -> db and frontend UDP are denied by frontend's egress policy on node A;
        // intruder -> backend leaves A (intruder has no egress policy) and is refused by backend's ingress on B.
        Assert.Equal(2, report.Drops.Count);
        Assert.Equal((long)expected.EgressDenied * loops, report.Drops["egress:POLICY_DENIED"]);
        Assert.Equal((long)expected.IngressDenied * loops, report.Drops["ingress:POLICY_DENIED"]);
        Assert.Equal(expected.Flows, report.Flows);
        Assert.True(report.BareSealNsPerPacket > 0 && report.NsPerPacket > 0 && report.SampledPackets > 0);
        Assert.Contains("parse_policy", report.StageNs.Keys);
    }

    [Fact]
    public void Plain_replay_round_trips_every_packet()
    {
        var expected = _expected[ReplayFixtureGenerator.Imix];
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        var report = ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Plain, Loops = 2 });
        Assert.Equal(expected.Packets * 2L, report.RoundTripped);
        Assert.Empty(report.Drops);
        Assert.Equal(0, report.Mismatched);
    }

    [Theory]
    [InlineData(ReplayMode.Overlay)]
    [InlineData(ReplayMode.Plain)]
    public void Steady_state_allocates_nothing_per_packet(ReplayMode mode)
    {
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        var report = ReplayRunner.Run(capture, new ReplayOptions { Mode = mode, Policy = mode == ReplayMode.Overlay ? DemoPolicy() : null, Loops = 5 });
        Assert.True(report.Packets > 0);
        Assert.Equal(0, report.AllocatedBytes);
    }

    [Fact]
    public void Written_underlay_capture_audits_encrypted_and_holds_the_handshake()
    {
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        string pcap = Path.Combine(_tmp, "underlay.pcap"), keylog = Path.Combine(_tmp, "keys.log");
        long frames;
        using (var writer = new UnderlayCaptureWriter(pcap))
        {
            ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Overlay, Policy = DemoPolicy(), Sink = writer, KeyLogPath = keylog });
            frames = writer.Frames;
        }
        var expected = _expected[ReplayFixtureGenerator.Imix];
        // Handshake initiation, response, confirming keepalive, then one datagram per packet node A sent
        // (egress-denied ones never leave A).
        Assert.Equal(3 + expected.Packets - expected.EgressDenied, frames);
        var audit = CaptureAuditor.AuditFile(pcap);
        Assert.Equal("ENCRYPTED", audit.Verdict);
        Assert.Equal(frames, audit.TotalPackets);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keylog));
        var lines = File.ReadAllLines(keylog).Where(l => !l.StartsWith('#')).ToArray();
        // Both nodes' static keys and the ephemeral key of each side's handshake message.
        Assert.Equal(2, lines.Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, "^LOCAL_STATIC_PRIVATE_KEY = [A-Za-z0-9+/]{43}=$")));
        Assert.Equal(2, lines.Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, "^LOCAL_EPHEMERAL_PRIVATE_KEY = [A-Za-z0-9+/]{43}=$")));
        Assert.Equal(4, lines.Length);
    }

    [SkippableFact]
    public void Tshark_dissects_the_written_capture_as_WireGuard()
    {
        string? tshark = new[] { "/usr/bin/tshark", "/usr/local/bin/tshark" }.FirstOrDefault(File.Exists);
        Skip.If(tshark is null, "tshark is not installed (apt-get install tshark)");
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        string pcap = Path.Combine(_tmp, "underlay.pcap"), keylog = Path.Combine(_tmp, "keys.log");
        using (var writer = new UnderlayCaptureWriter(pcap))
        {
            ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Plain, Sink = writer, KeyLogPath = keylog });
        }
        string types = RunTshark(tshark!, "-r", pcap, "-d", "udp.port==51871,wg", "-T", "fields", "-e", "wg.type");
        var counts = types.Split('\n', StringSplitOptions.RemoveEmptyEntries).GroupBy(t => t.Trim()).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(1, counts["1"]);
        Assert.Equal(1, counts["2"]);
        Assert.Equal(_expected[ReplayFixtureGenerator.Imix].Packets + 1, counts["4"]); // + the confirming keepalive
        // With the static keys Wireshark decrypts the initiation's static key field and so
        // identifies the initiator (node A's public key).
        string statics = RunTshark(tshark!, "-r", pcap, "-d", "udp.port==51871,wg", "-o", $"wg.keylog_file:{keylog}",
            "-Y", "wg.type==1", "-T", "fields", "-e", "wg.static");
        Assert.Matches("^[A-Za-z0-9+/]{43}=$", statics.Trim());
    }

    [SkippableFact]
    public void Tshark_decrypts_transport_data_with_the_key_log_when_ephemeral_keys_are_known()
    {
        string? tshark = new[] { "/usr/bin/tshark", "/usr/local/bin/tshark" }.FirstOrDefault(File.Exists);
        Skip.If(tshark is null, "tshark is not installed (apt-get install tshark)");
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        string pcap = Path.Combine(_tmp, "underlay.pcap"), keylog = Path.Combine(_tmp, "keys.log");
        ReplayReport report;
        using (var writer = new UnderlayCaptureWriter(pcap))
        {
            report = ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Plain, Sink = writer, KeyLogPath = keylog });
        }
        Skip.If(report.EphemeralKeys == 0,
            "the engine draws handshake ephemeral keys outside its IRandomSource, so the key log has static keys only (hook requested from the tunnel owner)");
        string sources = RunTshark(tshark!, "-r", pcap, "-d", "udp.port==51871,wg", "-o", $"wg.keylog_file:{keylog}",
            "-Y", "wg.type==4 && ip.src==10.11.1.10", "-T", "fields", "-e", "ip.src");
        Assert.Contains("10.11.1.10", sources);
    }

    private static string RunTshark(string tshark, params string[] args)
    {
        var psi = new ProcessStartInfo(tshark) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["HOME"] = Path.GetTempPath();
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return output;
    }

    [Fact]
    public void Unreadable_or_empty_input_is_a_ReplayInputException()
    {
        Assert.Throws<ReplayInputException>(() => ReplayCapture.Load(Path.Combine(_tmp, "missing.pcap")));
        string junk = Path.Combine(_tmp, "junk.pcap");
        File.WriteAllBytes(junk, [1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.Throws<ReplayInputException>(() => ReplayCapture.Load(junk));
        Assert.Throws<ReplayInputException>(() => ReplayPolicy.Load(Path.Combine(_tmp, "missing.yaml"), null));
    }

    [Fact]
    public void Capture_addresses_split_into_initiators_and_responders()
    {
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        Assert.Equal(["10.11.1.10", "10.11.1.11", "10.11.1.12", "10.11.1.13", "10.11.1.20"], capture.SideA.Select(a => a.ToString()));
        Assert.Equal(["10.11.2.10", "10.11.2.11", "10.11.2.20"], capture.SideB.Select(a => a.ToString()));
    }
}

public sealed class EphemeralKeyRecorderTests
{
    [Fact]
    public void Recognises_a_recent_32_byte_draw_by_its_public_key_and_nothing_else()
    {
        using var recorder = new EphemeralKeyRecorder();
        var draw = new byte[32];
        recorder.Fill(draw);
        var clamped = (byte[])draw.Clone();
        clamped[0] &= 248;
        clamped[31] = (byte)(clamped[31] & 127 | 64);
        var publicKey = new byte[32];
        Gateway.Crypto.X25519.DerivePublicKey(clamped, publicKey);
        for (int i = 0; i < 5; i++) recorder.Fill(new byte[4]); // index draws are not remembered
        Assert.Equal(clamped, recorder.FindPrivate(publicKey));
        var other = new byte[32];
        Gateway.Crypto.X25519.GeneratePrivateKey(other);
        Gateway.Crypto.X25519.DerivePublicKey(other, publicKey);
        Assert.Null(recorder.FindPrivate(publicKey));
    }
}
