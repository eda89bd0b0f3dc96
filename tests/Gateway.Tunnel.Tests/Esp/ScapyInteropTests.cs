using System.Text;
using Gateway.Tunnel.Esp;
using static Gateway.Tunnel.Tests.Esp.EspInteropSupport;

namespace Gateway.Tunnel.Tests.Esp;

/// <summary>
/// Interop with an independent ESP implementation, scapy's SecurityAssociation (AES-GCM, tunnel
/// mode), since this kernel's xfrm has no rfc4106: packets sealed by Gateway open in scapy and
/// packets sealed by scapy open in Gateway, across the 2^32 boundary of extended sequence numbers.
/// </summary>
public class ScapyInteropTests
{
    private static readonly byte[] KeyAndSalt = Convert.FromHexString("6f7ac93eb0b5cd3c2b43d1e1d98d52bd4a2f13c7");
    private static string Script => Path.Combine(AppContext.BaseDirectory, "Esp", "scapy_esp.py");

    private static string[] Args(string mode, int icvBits, bool esn) =>
        [Script, mode, "3", Convert.ToHexString(KeyAndSalt), (icvBits / 8).ToString(), esn ? "1" : "0", NodeA.ToString(), NodeB.ToString()];

    [SkippableTheory]
    [InlineData(128, true)]
    [InlineData(96, true)]
    [InlineData(128, false)]
    public void GatewaySealsScapyOpens(int icvBits, bool esn)
    {
        string? why = ScapyMissing();
        Skip.If(why is not null, why);
        using var sa = new EspSecurityAssociation(3, KeyAndSalt, icvBits, esn);
        ulong start = esn ? uint.MaxValue - 2 : 100; // with ESN the sequence crosses 2^32
        sa.SetLastSequence(start);
        var inners = new List<byte[]>();
        var input = new StringBuilder();
        for (int i = 0; i < 6; i++)
        {
            byte[] inner = VxlanPacket(vni: 0x1234 + (uint)i, tag: i, payload: 10 + i * 7);
            inners.Add(inner);
            byte[] packet = SealWithOuterHeader(sa, inner, NodeA, NodeB);
            ulong seq = start + 1 + (ulong)i;
            input.Append(seq >> 32).Append(' ').AppendLine(Convert.ToHexString(packet));
        }
        var (code, output, err) = Run(SystemPython, Args("decrypt", icvBits, esn), input.ToString());
        Assert.True(code == 0, err);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(inners.Count, lines.Length);
        for (int i = 0; i < lines.Length; i++)
            Assert.Equal(Convert.ToHexString(inners[i]), lines[i].ToUpperInvariant());
    }

    [SkippableTheory]
    [InlineData(128, true)]
    [InlineData(96, true)]
    [InlineData(96, false)]
    public void ScapySealsGatewayOpens(int icvBits, bool esn)
    {
        string? why = ScapyMissing();
        Skip.If(why is not null, why);
        ulong start = esn ? uint.MaxValue - 2 : 100;
        var inners = new List<byte[]>();
        var input = new StringBuilder();
        for (int i = 0; i < 6; i++)
        {
            byte[] inner = VxlanPacket(vni: 0x2000 + (uint)i, tag: i, payload: 4 + i * 11);
            inners.Add(inner);
            input.Append(start + 1 + (ulong)i).Append(' ').AppendLine(Convert.ToHexString(inner));
        }
        var (code, output, err) = Run(SystemPython, Args("encrypt", icvBits, esn), input.ToString());
        Assert.True(code == 0, err);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(inners.Count, lines.Length);

        using var sa = new EspSecurityAssociation(3, KeyAndSalt, icvBits, esn);
        sa.SetReceiveTop(start);
        // Out of order, so the receiver infers the high bits on both sides of the boundary.
        foreach (int i in new[] { 3, 0, 5, 1, 4, 2 })
        {
            byte[] packet = Convert.FromHexString(lines[i]);
            Assert.True(EspOuterHeader.TryReadIpv4(packet, out var src, out var dst, out int at, out int length));
            Assert.Equal((NodeA, NodeB), (src, dst));
            var r = sa.Open(packet.AsSpan(at, length));
            Assert.Equal(EspStatus.Ok, r.Status);
            Assert.Equal(start + 1 + (ulong)i, r.Sequence);
            Assert.Equal(EspSecurityAssociation.NextHeaderIpv4, r.NextHeader);
            Assert.Equal(Convert.ToHexString(inners[i]), Convert.ToHexString(packet.AsSpan(at + r.Offset, r.Length)));
        }
        // Scapy's packets replayed: dropped.
        Assert.Equal(EspStatus.Replay, sa.Open(Convert.FromHexString(lines[2]).AsSpan(20)).Status);
    }

    [SkippableFact]
    public void ScapyRefusesAPacketWithTheWrongHighBits()
    {
        // The negative control: scapy must fail when told other ESN high bits, or the tests
        // above would not prove that Gateway puts the high bits in the AAD.
        string? why = ScapyMissing();
        Skip.If(why is not null, why);
        using var sa = new EspSecurityAssociation(3, KeyAndSalt, 128, true);
        sa.SetLastSequence(0x5_0000_0010);
        byte[] packet = SealWithOuterHeader(sa, VxlanPacket(7, 1), NodeA, NodeB);
        var (code, output, err) = Run(SystemPython, Args("decrypt", 128, true), $"4 {Convert.ToHexString(packet)}\n5 {Convert.ToHexString(packet)}\n");
        Assert.True(code == 0, err);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("FAIL", lines[0]);
        Assert.DoesNotContain("FAIL", lines[1]);
    }
}
