using Gateway.Datapath;
using Gateway.Tunnel.Esp;

namespace Gateway.Tunnel.Tests.Esp;

public class IpsecKeyFileTests
{
    private const string Hex40 = "000102030405060708090a0b0c0d0e0f10111213";

    [Fact]
    public void ParsesCiliumLines()
    {
        var keys = IpsecKeyFile.Parse($"3+ rfc4106(gcm(aes)) {Hex40} 128\n");
        var k = Assert.Single(keys);
        Assert.Equal(3, k.Spi);
        Assert.True(k.PerNodePair);
        Assert.Equal(128, k.IcvBits);
        Assert.Equal(16, k.KeyLength);
        Assert.Equal(Hex40, Convert.ToHexStringLower(k.KeyAndSalt));
        Assert.DoesNotContain(Hex40, k.ToString());

        var two = IpsecKeyFile.Parse($"# rotated\n1 rfc4106(gcm(aes)) 0x{Hex40} 96\n\n15+ rfc4106(gcm(aes)) {new string('a', 72)} 128\n");
        Assert.Equal([1, 15], two.Select(x => (int)x.Spi));
        Assert.False(two[0].PerNodePair);
        Assert.Equal(96, two[0].IcvBits);
        Assert.Equal(32, two[1].KeyLength);
    }

    [Theory]
    [InlineData("", "has no key")]
    [InlineData("rfc4106(gcm(aes)) " + Hex40 + " 128", "key id is missing")]
    [InlineData("0 rfc4106(gcm(aes)) " + Hex40 + " 128", "1..15")]
    [InlineData("16+ rfc4106(gcm(aes)) " + Hex40 + " 128", "1..15")]
    [InlineData("x+ rfc4106(gcm(aes)) " + Hex40 + " 128", "not a number")]
    [InlineData("3 rfc4106(gcm(aes)) " + Hex40 + " 256", "96 or 128")]
    [InlineData("3 rfc4106(gcm(aes)) " + Hex40 + " 64", "96 or 128")]
    [InlineData("3 rfc4106(gcm(aes)) 0011 128", "40, 56 or 72 hex digits")]
    [InlineData("3 rfc4106(gcm(aes)) 0g11 128", "hex digits")]
    [InlineData("3 rfc7539esp(rfc7539(chacha20,poly1305)) " + Hex40 + " 128", "only rfc4106(gcm(aes))")]
    [InlineData("3 hmac(sha256) 0011 cbc(aes) 0022", "not supported")]
    [InlineData("3 rfc4106(gcm(aes)) " + Hex40, "expected 4 fields")]
    public void RefusesWithAClearMessage(string text, string expected)
    {
        var e = Assert.Throws<IpsecKeyException>(() => IpsecKeyFile.Parse(text));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }
}

public class IpsecKeyDerivationTests
{
    private const string BootA = "11111111-2222-3333-4444-555555555555";
    private const string BootB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    // Expected values computed independently with Python's hashlib:
    //   sha256(G + 10.0.0.1 + 10.0.0.2 + bootA + bootB)[:20]   (and sha512 for a 36-byte G)
    [Fact]
    public void MatchesCiliumsFormula()
    {
        byte[] g = Convert.FromHexString("000102030405060708090a0b0c0d0e0f10111213");
        IpAddress a = IpAddress.Parse("10.0.0.1"), b = IpAddress.Parse("10.0.0.2");
        Assert.Equal("7b32441c6b5d1ddba23d3dc4dda0c376d3400b3a", Convert.ToHexStringLower(IpsecKeyDerivation.Derive(g, a, b, BootA, BootB)));
        Assert.Equal("76506e18a5816c653b479d1111381f7199bb442e", Convert.ToHexStringLower(IpsecKeyDerivation.Derive(g, b, a, BootB, BootA)));

        byte[] g36 = Enumerable.Range(0, 36).Select(i => (byte)i).ToArray();
        Assert.Equal("9e5ad29944ccf1ffe96632872ba8b171137e0d35fb1ad709696036d7e38420ee2ecd3db4",
            Convert.ToHexStringLower(IpsecKeyDerivation.Derive(g36, IpAddress.Parse("fd00::1"), IpAddress.Parse("fd00::2"), BootA, BootB)));
    }

    [Fact]
    public void MappedIpv6AddressesCountAsIpv4()
    {
        byte[] g = Convert.FromHexString("000102030405060708090a0b0c0d0e0f10111213");
        Assert.Equal(
            IpsecKeyDerivation.Derive(g, IpAddress.Parse("10.0.0.1"), IpAddress.Parse("10.0.0.2"), BootA, BootB),
            IpsecKeyDerivation.Derive(g, IpAddress.Parse("::ffff:10.0.0.1"), IpAddress.Parse("::ffff:10.0.0.2"), BootA, BootB));
    }

    [Fact]
    public void ShortOrNonAsciiBootIdIsRefused()
    {
        byte[] g = new byte[20];
        Assert.Throws<ArgumentException>(() => IpsecKeyDerivation.Derive(g, IpAddress.Parse("10.0.0.1"), IpAddress.Parse("10.0.0.2"), "short", BootB));
        Assert.Throws<ArgumentException>(() => IpsecKeyDerivation.Derive(g, IpAddress.Parse("10.0.0.1"), IpAddress.Parse("10.0.0.2"), new string('é', 36), BootB));
    }
}

public class IpsecKeyManagerTests
{
    private static string Line(int spi, char fill = 'a', int icv = 128, int hexDigits = 40) => $"{spi}+ rfc4106(gcm(aes)) {new string(fill, hexDigits)} {icv}\n";

    [Fact]
    public void RotationKeepsTheOldKeyForTheDurationThenRemovesIt()
    {
        var clock = new FakeClock();
        var m = new IpsecKeyManager(clock, TimeSpan.FromMinutes(5));
        Assert.Equal(IpsecKeyLoadOutcome.Loaded, m.Load(Line(1)));
        Assert.Equal(IpsecKeyLoadOutcome.Unchanged, m.Load(Line(1)));
        long v = m.Keys.Version;
        Assert.Equal(IpsecKeyLoadOutcome.Rotated, m.Load(Line(2, 'b')));
        Assert.Equal(v + 1, m.Keys.Version);
        Assert.Equal(2, m.Keys.Current!.Spi);
        Assert.Equal([2, 1], m.Keys.Accepted.Select(k => (int)k.Spi));
        Assert.Equal(2, m.Keys.Count);

        clock.Advance(TimeSpan.FromMinutes(5) - TimeSpan.FromSeconds(1));
        Assert.Equal(0, m.RemoveExpired());
        Assert.Equal(2, m.Keys.Count);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, m.RemoveExpired());
        Assert.Equal([2], m.Keys.Accepted.Select(k => (int)k.Spi));
    }

    [Fact]
    public void ReusedIdWithAnotherKeyOrChangedLengthIsRefusedAndTheOldKeyStays()
    {
        var m = new IpsecKeyManager(new FakeClock(), IpsecKeyManager.DefaultRotationDuration);
        m.Load(Line(3));
        var e = Assert.Throws<IpsecKeyException>(() => m.Load(Line(3, 'b')));
        Assert.Contains("new key needs a new key id", e.Message);
        e = Assert.Throws<IpsecKeyException>(() => m.Load(Line(4, 'b', hexDigits: 72)));
        Assert.Contains("key length may not change", e.Message);
        Assert.Throws<IpsecKeyException>(() => m.Load("garbage"));
        Assert.Equal(3, m.Keys.Current!.Spi);
        Assert.Equal(1, m.Keys.Count);
    }

    [Fact]
    public void AnIdStillRetiringCannotComeBackYet()
    {
        var clock = new FakeClock();
        var m = new IpsecKeyManager(clock, TimeSpan.FromMinutes(5));
        m.Load(Line(15));
        m.Load(Line(1, 'b')); // rolling over 15 -> 1
        Assert.Contains("still being retired", Assert.Throws<IpsecKeyException>(() => m.Load(Line(15, 'c'))).Message);
        clock.Advance(TimeSpan.FromMinutes(5));
        m.RemoveExpired();
        Assert.Equal(IpsecKeyLoadOutcome.Rotated, m.Load(Line(15, 'c')));
    }
}
