using Gateway.Datapath.Audit;
using Gateway.Node.Replay;

namespace Gateway.Node.Tests.Replay;

/// <summary>The replay with IPsec ESP between the nodes instead of WireGuard (issue 16).</summary>
public sealed class IpsecReplayTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "gw-replay-ipsec-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, ReplayFixtureGenerator.Expected> _expected;

    public IpsecReplayTests() => _expected = ReplayFixtureGenerator.WriteAll(_tmp);

    public void Dispose()
    {
        if (Directory.Exists(_tmp)) Directory.Delete(_tmp, recursive: true);
    }

    private static string Fixture(string name) => Path.Combine(ReplayFixtureTests.FixtureDirectory, name);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Overlay_over_ipsec_round_trips_the_allowed_packets_and_drops_the_rest_by_policy(int workers)
    {
        var expected = _expected[ReplayFixtureGenerator.Imix];
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        const int loops = 3;
        var report = ReplayRunner.Run(capture, new ReplayOptions
        {
            Mode = ReplayMode.Overlay,
            Encryption = ReplayEncryption.Ipsec,
            Policy = ReplayPolicy.Load(Fixture("endpoints.yaml"), Fixture("policy.yaml")),
            Loops = loops,
            Workers = workers,
        });
        Assert.Equal(ReplayEncryption.Ipsec, report.Encryption);
        Assert.Equal((long)expected.Allowed * loops, report.RoundTripped);
        Assert.Equal(0, report.Mismatched);
        Assert.Equal(0, report.NotSent);
        Assert.Equal(2, report.Drops.Count);
        Assert.Equal((long)expected.EgressDenied * loops, report.Drops["egress:POLICY_DENIED"]);
        Assert.Equal((long)expected.IngressDenied * loops, report.Drops["ingress:POLICY_DENIED"]);
        Assert.Equal(0, report.ControlDatagrams); // no handshake: SAs come from the keys
        Assert.True(report.BareSealNsPerPacket > 0 && report.NsPerPacket > 0 && report.SampledPackets > 0);
    }

    [Fact]
    public void Plain_over_ipsec_round_trips_every_packet_without_allocating()
    {
        var expected = _expected[ReplayFixtureGenerator.Imix];
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        var report = ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Plain, Encryption = ReplayEncryption.Ipsec, Loops = 5 });
        Assert.Equal(expected.Packets * 5L, report.RoundTripped);
        Assert.Empty(report.Drops);
        Assert.Equal(0, report.AllocatedBytes);
    }

    [Fact]
    public void Written_ipsec_capture_audits_encrypted_and_the_esp_sa_file_is_private()
    {
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        string pcap = Path.Combine(_tmp, "esp.pcap"), sa = Path.Combine(_tmp, "esp.pcap.esp_sa");
        using (var writer = new UnderlayCaptureWriter(pcap))
        {
            var report = ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Plain, Encryption = ReplayEncryption.Ipsec, Sink = writer, EspSaPath = sa });
            Assert.Equal(capture.Count, writer.Frames);
            Assert.Equal(capture.Count, report.RoundTripped);
        }
        var audit = CaptureAuditor.AuditFile(pcap);
        Assert.Equal(capture.Count, audit.Counts[PacketClass.IpsecEsp]);
        Assert.Equal("ENCRYPTED", audit.Verdict);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(sa));
        string[] records = File.ReadAllLines(sa).Where(l => !l.StartsWith('#')).ToArray();
        Assert.Equal(2, records.Length);
        Assert.All(records, r => Assert.Contains("\"AES-GCM with 16 octet ICV [RFC4106]\"", r));
    }

    [Fact]
    public void Key_log_with_ipsec_is_refused()
    {
        var capture = ReplayCapture.Load(Fixture(ReplayFixtureGenerator.Imix));
        Assert.Throws<ArgumentException>(() => ReplayRunner.Run(capture, new ReplayOptions { Mode = ReplayMode.Plain, Encryption = ReplayEncryption.Ipsec, KeyLogPath = Path.Combine(_tmp, "k") }));
    }
}
