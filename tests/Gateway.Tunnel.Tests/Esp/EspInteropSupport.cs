using System.Buffers.Binary;
using System.Diagnostics;
using Gateway.Datapath;
using Gateway.Tunnel.Esp;

namespace Gateway.Tunnel.Tests.Esp;

/// <summary>Packets and external tools shared by the ESP interop tests.</summary>
internal static class EspInteropSupport
{
    public const string SystemPython = "/usr/bin/python3"; // Debian's, where python3-scapy lives
    public static readonly IpAddress NodeA = IpAddress.Parse("192.0.2.1"), NodeB = IpAddress.Parse("192.0.2.2");

    /// <summary>Why scapy cannot run here, or null when it can.</summary>
    public static string? ScapyMissing()
    {
        if (!File.Exists(SystemPython)) return $"{SystemPython} not found (scripts/setup.sh installs python3-scapy)";
        var (code, _, err) = Run(SystemPython, ["-c", "import scapy.layers.ipsec, cryptography"], "");
        return code == 0 ? null : $"python3-scapy/python3-cryptography missing (scripts/setup.sh installs them): {err.Trim()}";
    }

    public static (int Code, string Out, string Err) Run(string file, IEnumerable<string> args, string stdin, int timeoutMs = 60_000)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish in {timeoutMs} ms");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>
    /// A VXLAN datagram between node tunnel addresses as overlay mode builds it: IPv4/UDP to port
    /// 8472, VXLAN with the sender's identity as VNI, then an Ethernet frame with an IPv4/UDP packet
    /// between pods whose payload carries <paramref name="tag"/>.
    /// </summary>
    public static byte[] VxlanPacket(uint vni, int tag, int payload = 64)
    {
        int innerIp = 20 + 8 + payload;
        int frame = 14 + innerIp;
        int total = 20 + 8 + 8 + frame;
        var p = new byte[total];
        var s = p.AsSpan();
        WriteIpv4(s, total, IpProtocol.Udp, IpAddress.Parse("10.200.0.1"), IpAddress.Parse("10.200.0.2"));
        BinaryPrimitives.WriteUInt16BigEndian(s[20..], 40000);
        BinaryPrimitives.WriteUInt16BigEndian(s[22..], 8472);
        BinaryPrimitives.WriteUInt16BigEndian(s[24..], (ushort)(total - 20));
        Vxlan.Write(s[28..], vni);
        var eth = s[36..];
        eth[..6].Fill(0x02);
        eth.Slice(6, 6).Fill(0x04);
        BinaryPrimitives.WriteUInt16BigEndian(eth[12..], 0x0800);
        var ip = eth[14..];
        WriteIpv4(ip, innerIp, IpProtocol.Udp, IpAddress.Parse("10.1.0.5"), IpAddress.Parse("10.2.0.7"));
        BinaryPrimitives.WriteUInt16BigEndian(ip[20..], 5000);
        BinaryPrimitives.WriteUInt16BigEndian(ip[22..], 6000);
        BinaryPrimitives.WriteUInt16BigEndian(ip[24..], (ushort)(8 + payload));
        BinaryPrimitives.WriteInt32BigEndian(ip[28..], tag);
        return p;
    }

    private static void WriteIpv4(Span<byte> ip, int totalLength, byte protocol, IpAddress src, IpAddress dst)
    {
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)totalLength);
        ip[8] = 64;
        ip[9] = protocol;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], src.V4);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], dst.V4);
        Ipv4Header.FillChecksum(ip[..20]);
    }

    /// <summary>Seals <paramref name="inner"/> with <paramref name="sa"/> and returns the outer IPv4 + ESP packet.</summary>
    public static byte[] SealWithOuterHeader(EspSecurityAssociation sa, byte[] inner, IpAddress src, IpAddress dst)
    {
        var buffer = new byte[64 + inner.Length + 64];
        inner.CopyTo(buffer, 64);
        var r = sa.Seal(buffer, 64, inner.Length, EspSecurityAssociation.NextHeaderIpv4);
        if (!r.IsOk) throw new InvalidOperationException(r.ToString());
        var packet = new byte[EspOuterHeader.Ipv4Length + r.Length];
        EspOuterHeader.WriteIpv4(packet, src, dst, r.Length, 1);
        buffer.AsSpan(r.Offset, r.Length).CopyTo(packet.AsSpan(EspOuterHeader.Ipv4Length));
        return packet;
    }
}
