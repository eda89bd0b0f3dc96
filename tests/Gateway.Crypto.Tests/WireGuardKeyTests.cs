namespace Gateway.Crypto.Tests;

public class WireGuardKeyTests
{
    // Produced by wireguard-tools on the development machine: `wg genkey | tee /dev/stderr | wg pubkey`.
    private const string WgPrivate = "2HaLlvNo3SjK6S7w95I/e11LaPjDDfu0aLk5Mo76Zko=";
    private const string WgPublic = "7fnfpMNHPxxWKgbyGzlsb9Mm2xf17F2l5b0lYjFb3j4=";

    [Fact]
    public void DerivesTheSamePublicKeyAsWg()
    {
        Assert.True(WireGuardKey.TryParseBase64(WgPrivate, out var priv));
        using (priv)
        using (var pub = priv!.DerivePublic())
        {
            Assert.Equal(WgPublic, pub.ToBase64());
            Assert.Equal(WgPrivate, priv.ToBase64());
        }
    }

    [Fact]
    public void Base64AndHexRoundTripRandomKeys()
    {
        var rng = new Random(11);
        var bytes = new byte[32];
        for (int i = 0; i < 500; i++)
        {
            rng.NextBytes(bytes);
            if (i < 4)
            {
                bytes.AsSpan().Fill((byte)(i * 0x55)); // 00.., 55.., aa.., ff..
            }
            using var key = new WireGuardKey(bytes);
            string b64 = key.ToBase64();
            string hex = key.ToHex();
            Assert.Equal(Convert.ToBase64String(bytes), b64);
            Assert.Equal(Convert.ToHexStringLower(bytes), hex);

            Assert.True(WireGuardKey.TryParseBase64(b64, out var fromB64));
            Assert.True(WireGuardKey.TryParseHex(hex, out var fromHex));
            Assert.True(WireGuardKey.TryParseHex(hex.ToUpperInvariant(), out var fromUpper));
            using (fromB64)
            using (fromHex)
            using (fromUpper)
            {
                Assert.Equal(bytes, fromB64!.Bytes.ToArray());
                Assert.Equal(bytes, fromHex!.Bytes.ToArray());
                Assert.Equal(bytes, fromUpper!.Bytes.ToArray());
                Assert.True(key.Equals(fromB64));
                Assert.Equal(key.GetHashCode(), fromHex.GetHashCode());
            }
        }
    }

    public static TheoryData<string?> MalformedBase64() => new()
    {
        null,
        "",
        WgPrivate[..43],                       // 43 chars
        WgPrivate + "=",                        // 45 chars
        WgPrivate[..43] + "A",                  // no padding
        WgPrivate[..42] + "==",                 // 31-byte form
        "!" + WgPrivate[1..],                   // bad character
        WgPrivate[..10] + "-" + WgPrivate[11..],// URL-safe alphabet is not wg's
        WgPrivate[..10] + "_" + WgPrivate[11..],
        WgPrivate[..10] + " " + WgPrivate[11..],
        WgPrivate[..10] + "\0" + WgPrivate[11..],
        WgPrivate[..10] + "é" + WgPrivate[11..],
        WgPrivate[..10] + "\u0141" + WgPrivate[11..], // 'A' + 256: must not alias 'A'
        " " + WgPrivate[..43],
        WgPrivate[..42] + "B=",                 // non-canonical: unused low bits set
        WgPrivate[..42] + "/=",
    };

    [Theory]
    [MemberData(nameof(MalformedBase64))]
    public void MalformedBase64IsRejected(string? text)
    {
        Assert.False(WireGuardKey.TryParseBase64(text, out var key));
        Assert.Null(key);
        Assert.False(WireGuardKey.TryDecodeBase64(text, stackalloc byte[WireGuardKey.Size]));
    }

    [Fact]
    public void DecodingWithoutAKeyGivesTheKeysBytes()
    {
        Span<byte> bytes = stackalloc byte[WireGuardKey.Size];
        for (int i = 0; i < 64; i++)
        {
            using var key = WireGuardKey.GeneratePrivate();
            string text = key.ToBase64();
            Assert.True(WireGuardKey.TryDecodeBase64(text, bytes));
            Assert.True(bytes.SequenceEqual(key.Bytes));
        }
        Assert.Throws<ArgumentException>(() => WireGuardKey.TryDecodeBase64(WgPrivate, new byte[31]));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("00112233445566778899aabbccddeeff00112233445566778899aabbccddeef")]   // 63
    [InlineData("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0")] // 65
    [InlineData("00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg")]
    [InlineData("0x112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")]
    [InlineData(" 0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")]
    public void MalformedHexIsRejected(string? text)
    {
        Assert.False(WireGuardKey.TryParseHex(text, out var key));
        Assert.Null(key);
    }

    [Fact]
    public void DisposeZeroesTheKeyAndBlocksAccess()
    {
        var key = WireGuardKey.GeneratePreshared();
        Assert.False(key.IsZero);
        Assert.Contains(key.StorageForTests.ToArray(), b => b != 0);
        key.Dispose();
        Assert.All(key.StorageForTests.ToArray(), b => Assert.Equal(0, b));
        Assert.Throws<ObjectDisposedException>(() => key.Bytes.Length);
        Assert.Throws<ObjectDisposedException>(() => key.ToBase64());
        Assert.Throws<ObjectDisposedException>(() => key.DerivePublic());
        key.Dispose(); // idempotent
    }

    [Fact]
    public void ToStringNeverRevealsTheKey()
    {
        using var key = WireGuardKey.GeneratePrivate();
        string text = key.ToString();
        Assert.DoesNotContain(key.ToBase64(), text);
        Assert.DoesNotContain(key.ToBase64()[..8], text);
        Assert.DoesNotContain(key.ToHex()[..8], text);
        Assert.StartsWith("WireGuardKey(", text);
    }

    [Fact]
    public void EqualityIsByValue()
    {
        using var a = WireGuardKey.GeneratePreshared();
        using var b = new WireGuardKey(a.Bytes);
        using var c = WireGuardKey.GeneratePreshared();
        Assert.True(a.Equals(b));
        Assert.True(a.Equals((object)b));
        Assert.False(a.Equals(c));
        Assert.False(a.Equals(null));
        Assert.False(c.IsZero);
        using var zero = new WireGuardKey(new byte[32]);
        Assert.True(zero.IsZero);
    }

    [Fact]
    public void GeneratedPrivateKeysAreClampedAndDistinct()
    {
        using var a = WireGuardKey.GeneratePrivate();
        using var b = WireGuardKey.GeneratePrivate();
        Assert.False(a.Equals(b));
        Assert.Equal(0, a.Bytes[0] & 7);
        Assert.Equal(0x40, a.Bytes[31] & 0xC0);
        using var pub = a.DerivePublic();
        var expected = new byte[32];
        X25519.DerivePublicKey(a.Bytes, expected);
        Assert.Equal(expected, pub.Bytes.ToArray());
    }

    [Fact]
    public void WrongLengthConstructorThrows()
    {
        Assert.Throws<ArgumentException>(() => new WireGuardKey(new byte[31]));
    }
}
