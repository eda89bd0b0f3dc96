using System.Buffers.Binary;
using System.Text.Json;
using Gateway.Datapath;

namespace Gateway.Cli.Tests.Daemon;

/// <summary>
/// The daemon's crypto worker pool: packets sealed and opened on several threads still leave and
/// arrive in order per peer. Checked on the wire (the transport counters in an underlay capture
/// never go backwards) and end to end (iperf3 over UDP sees nothing out of order).
/// </summary>
[Collection("daemon")]
public class CryptoWorkerTests
{
    [SkippableTheory]
    [InlineData(2)]
    [InlineData(0)]
    public void PacketsStayInOrderPerPeerOnTheWireAndEndToEnd(int workers)
    {
        Skip.If(Sh.SkipReason() is not null, Sh.SkipReason());
        Skip.IfNot(File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"), "needs tcpdump (scripts/setup.sh installs it)");
        using var t = new Topology();
        t.A.StartGateway(t.B, options: $"--crypto-workers {workers}");
        t.B.StartGateway(t.A, options: $"--crypto-workers {workers}");
        t.A.WaitForLog(workers == 0 ? "crypto on the I/O threads" : $"{workers} crypto worker(s)");
        Assert.Contains("3 received", t.A.Exec($"ping -c 3 -i 0.2 -W 3 {t.B.TunnelAddress}", check: false));

        // Headers are enough: 14 Ethernet + 20 IP + 8 UDP + 16 WireGuard.
        string pcap = t.TempFile($"order{workers}.pcap", "");
        var capture = t.StartProcess(t.A.Ns, $"tcpdump --immediate-mode -i va{t.Id} -U -s 96 -w {pcap} udp");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!t.Logs[capture].ToString().Contains("listening on", StringComparison.Ordinal) && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(20); // another process starting, not protocol time
        }
        string json = t.Iperf("-u -b 300M -l 1200 -t 2", complete: "\"sum\"");
        Sh.Run($"kill -INT {capture.Id}");
        capture.WaitForExit(10_000);

        using var doc = JsonDocument.Parse(json);
        var sum = doc.RootElement.GetProperty("end").GetProperty("sum");
        long packets = sum.GetProperty("packets").GetInt64();
        long lost = sum.GetProperty("lost_packets").GetInt64();
        Assert.True(packets - lost > 1000, $"too little arrived to judge the order: {packets} sent, {lost} lost");
        long outOfOrder = doc.RootElement.GetProperty("end").GetProperty("streams")[0].GetProperty("udp").GetProperty("out_of_order").GetInt64();
        Assert.Equal(0, outOfOrder);

        // A's transport messages to B, in capture order: each session's counters only rise. With UDP
        // GSO the capture (taken above the veth's segmentation) holds one frame per GSO message,
        // whose first WireGuard message is what is read here; frames are still many hundreds.
        var last = new Dictionary<uint, ulong>();
        long transports = 0, backwards = 0;
        using (var reader = CaptureFileReader.Open(pcap))
        {
            while (reader.TryReadNext(out var frame))
            {
                var data = frame.Data;
                if (data.Length < 14 + 20 + 8 + 16 || BinaryPrimitives.ReadUInt16BigEndian(data[12..]) != 0x0800)
                {
                    continue;
                }
                var ip = data[14..];
                int ihl = (ip[0] & 15) * 4;
                if (ip[9] != 17 || new System.Net.IPAddress(ip.Slice(12, 4)).ToString() != t.A.Underlay)
                {
                    continue;
                }
                var wg = ip[(ihl + 8)..];
                if (wg.Length < 16 || wg[0] != 4)
                {
                    continue;
                }
                transports++;
                uint receiver = BinaryPrimitives.ReadUInt32LittleEndian(wg[4..]);
                ulong counter = BinaryPrimitives.ReadUInt64LittleEndian(wg[8..]);
                if (last.TryGetValue(receiver, out ulong previous) && counter <= previous)
                {
                    backwards++;
                }
                last[receiver] = counter;
            }
        }
        Assert.True(transports > 200, $"captured only {transports} frames of transport messages");
        Assert.Equal(0, backwards);
    }
}
