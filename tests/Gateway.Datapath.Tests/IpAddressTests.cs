using FsCheck.Xunit;
using System.Net;
using Gateway.Datapath;

namespace Gateway.Datapath.Tests;

public class IpAddressTests
{
    [Theory]
    [InlineData("10.0.0.1", 0x0A000001u)]
    [InlineData("255.255.255.255", 0xFFFFFFFFu)]
    [InlineData("0.0.0.0", 0u)]
    public void ParsesIPv4(string text, uint value)
    {
        Assert.True(IpAddress.TryParse(text, out var a));
        Assert.True(a.IsV4);
        Assert.Equal(value, a.V4);
        Assert.Equal(text, a.ToString());
    }

    [Theory]
    [InlineData("fd00::1")]
    [InlineData("::")]
    [InlineData("2001:db8::8a2e:370:7334")]
    [InlineData("::ffff:1.2.3.4")]
    public void ParsesIPv6(string text)
    {
        var a = IpAddress.Parse(text);
        Assert.True(a.IsV6);
        Assert.Equal(IPAddress.Parse(text), a.ToIPAddress());
    }

    [Theory]
    [InlineData("")]
    [InlineData("1.2.3")]
    [InlineData("1")]
    [InlineData("256.1.1.1")]
    [InlineData("1.2.3.4.5")]
    [InlineData("0x0a.0.0.1")]
    [InlineData("fe80::1%eth0")]
    [InlineData("10.0.0.0/8")]
    [InlineData("hello")]
    public void RejectsMalformed(string text) => Assert.False(IpAddress.TryParse(text, out _));

    // The IPv4 fast path (no IPAddress object) must accept and read exactly what the rule it
    // replaced did: four parts of one to three digits, each at most 255 in decimal, read by
    // IPAddress (which gives a leading zero its own meaning); and print as IPAddress prints.
    [Property(MaxTest = 2000)]
    public void DottedQuadsParseAndPrintAsIPAddressDoes(byte[] parts, bool[] zeros, bool extraDot)
    {
        var texts = parts.Take(5).Select((p, i) => (i < zeros.Length && zeros[i] ? "0" : "") + (p * 4 % 1000).ToString(System.Globalization.CultureInfo.InvariantCulture));
        string text = string.Join('.', texts) + (extraDot ? "." : "");
        var split = text.Split('.');
        bool expected = split.Length == 4 && split.All(s => s.Length is >= 1 and <= 3 && s.All(char.IsAsciiDigit) && int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) <= 255) &&
            IPAddress.TryParse(text, out _);
        Assert.Equal(expected, IpAddress.TryParse(text, out var a));
        if (expected)
        {
            var oracle = IPAddress.Parse(text);
            Assert.Equal(oracle, a.ToIPAddress());
            Assert.Equal(oracle.ToString(), a.ToString());
        }
    }

    [Fact]
    public void FamiliesAreDistinct()
    {
        Assert.NotEqual(IpAddress.Parse("1.2.3.4"), IpAddress.Parse("::ffff:1.2.3.4"));
        Assert.NotEqual(IpAddress.FromV4(1), IpAddress.FromV6(1));
        Assert.True(IpAddress.FromV4(uint.MaxValue).CompareTo(IpAddress.FromV6(0)) < 0);
    }

    [Fact]
    public void BytesRoundTrip()
    {
        Span<byte> b = stackalloc byte[16];
        var v6 = IpAddress.Parse("2001:db8::1");
        v6.WriteBytes(b);
        Assert.Equal(v6, IpAddress.FromBytes(b));
        var v4 = IpAddress.Parse("192.168.1.2");
        v4.WriteBytes(b);
        Assert.Equal(new byte[] { 192, 168, 1, 2 }, b[..4].ToArray());
        Assert.False(IpAddress.TryFromBytes(b[..5], out _));
        Assert.Throws<ArgumentException>(() => IpAddress.FromBytes(new byte[3]));
    }

    [Fact]
    public void TryFormatMatchesToString()
    {
        Span<char> buffer = stackalloc char[64];
        foreach (var text in new[] { "10.1.2.3", "fd00::abcd" })
        {
            var a = IpAddress.Parse(text);
            Assert.True(a.TryFormat(buffer, out int n, default, null));
            Assert.Equal(text, buffer[..n].ToString());
        }
    }
}

public class IpPrefixTests
{
    [Theory]
    [InlineData("10.1.2.3/8", "10.0.0.0/8")]
    [InlineData("10.0.0.1", "10.0.0.1/32")]
    [InlineData("fd00::1/64", "fd00::/64")]
    [InlineData("::/0", "::/0")]
    [InlineData("0.0.0.0/0", "0.0.0.0/0")]
    public void ParsesAndClearsHostBits(string text, string canonical) =>
        Assert.Equal(canonical, IpPrefix.Parse(text).ToString());

    [Theory]
    [InlineData("10.0.0.0/33")]
    [InlineData("10.0.0.0/")]
    [InlineData("10.0.0.0/-1")]
    [InlineData("fd00::/129")]
    [InlineData("/8")]
    [InlineData("10.0.0.0/8/8")]
    public void RejectsMalformed(string text) => Assert.False(IpPrefix.TryParse(text, out _));

    [Fact]
    public void Containment()
    {
        var p = IpPrefix.Parse("10.0.0.0/8");
        Assert.True(p.Contains(IpAddress.Parse("10.255.0.1")));
        Assert.False(p.Contains(IpAddress.Parse("11.0.0.1")));
        Assert.False(p.Contains(IpAddress.Parse("::a00:1")));
        Assert.True(p.Contains(IpPrefix.Parse("10.1.0.0/16")));
        Assert.False(IpPrefix.Parse("10.1.0.0/16").Contains(p));
        Assert.True(IpPrefix.Parse("0.0.0.0/0").Contains(IpAddress.Parse("8.8.8.8")));
    }
    [Fact]
    public void HalvesAgreeWithTheWholeValueAndOrderIsNumericWithinAFamily()
    {
        var rng = new System.Random(5);
        for (int i = 0; i < 1000; i++)
        {
            ulong upper = (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63), lower = (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63);
            var v6 = IpAddress.FromV6(upper, lower);
            Assert.Equal(IpAddress.FromV6(((UInt128)upper << 64) | lower), v6);
            Assert.Equal(((UInt128)upper << 64) | lower, v6.V6);
            Assert.Equal((upper, lower), (v6.High, v6.Low));
            var other = IpAddress.FromV6((ulong)rng.NextInt64(), (ulong)rng.NextInt64());
            Assert.Equal(Math.Sign(v6.V6.CompareTo(other.V6)), Math.Sign(v6.CompareTo(other)));
            uint a = (uint)rng.NextInt64(), b = (uint)rng.NextInt64();
            Assert.Equal(Math.Sign(a.CompareTo(b)), Math.Sign(IpAddress.FromV4(a).CompareTo(IpAddress.FromV4(b))));
            Assert.Equal((0UL, (ulong)a), (IpAddress.FromV4(a).High, IpAddress.FromV4(a).Low));
            Assert.True(IpAddress.FromV4(a).CompareTo(v6) < 0); // IPv4 sorts first
        }
    }
}
