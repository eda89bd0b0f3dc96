using BcX25519 = Org.BouncyCastle.Math.EC.Rfc7748.X25519;

namespace Gateway.Crypto.Tests;

public class X25519Tests
{
    /// <summary>RFC 7748 section 5.2 (scalars are not clamped in the vectors; X25519 clamps).</summary>
    [Theory]
    [InlineData("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")]
    [InlineData("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957")]
    public void Rfc7748Section52(string scalar, string u, string expected)
    {
        var shared = new byte[32];
        Assert.True(X25519.TryAgree(Hex.Bytes(scalar), Hex.Bytes(u), shared));
        Assert.Equal(expected, Hex.Of(shared));
    }

    [Fact]
    public void Rfc7748Section52IteratedThousandTimes()
    {
        byte[] k = new byte[32], u = new byte[32], r = new byte[32];
        k[0] = 9;
        u[0] = 9;
        for (int i = 1; i <= 1000; i++)
        {
            Assert.True(X25519.TryAgree(k, u, r));
            k.CopyTo(u, 0);
            r.CopyTo(k, 0);
            if (i == 1)
            {
                Assert.Equal("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079", Hex.Of(k));
            }
        }
        Assert.Equal("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51", Hex.Of(k));
    }

    [Fact]
    public void Rfc7748Section61DiffieHellman()
    {
        var alicePub = new byte[32];
        var bobPub = new byte[32];
        X25519.DerivePublicKey(Hex.Bytes(CryptoSelfTest.Rfc7748.AlicePrivate), alicePub);
        X25519.DerivePublicKey(Hex.Bytes(CryptoSelfTest.Rfc7748.BobPrivate), bobPub);
        Assert.Equal(CryptoSelfTest.Rfc7748.AlicePublic, Hex.Of(alicePub));
        Assert.Equal(CryptoSelfTest.Rfc7748.BobPublic, Hex.Of(bobPub));

        var s1 = new byte[32];
        var s2 = new byte[32];
        Assert.True(X25519.TryAgree(Hex.Bytes(CryptoSelfTest.Rfc7748.AlicePrivate), bobPub, s1));
        Assert.True(X25519.TryAgree(Hex.Bytes(CryptoSelfTest.Rfc7748.BobPrivate), alicePub, s2));
        Assert.Equal(CryptoSelfTest.Rfc7748.Shared, Hex.Of(s1));
        Assert.Equal(CryptoSelfTest.Rfc7748.Shared, Hex.Of(s2));
    }

    /// <summary>
    /// Points of order 1, 2, 4 and 8 (and their non-canonical encodings p-1, p, p+1) give an
    /// all-zero shared secret for every private key: they must be refused.
    /// </summary>
    public static TheoryData<string> LowOrderPoints()
    {
        var points = new[]
        {
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        };
        var data = new TheoryData<string>();
        foreach (string p in points)
        {
            data.Add(p);
            // Same point with the unused top bit set (X25519 ignores bit 255).
            byte[] high = Hex.Bytes(p);
            high[31] |= 0x80;
            data.Add(Hex.Of(high));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(LowOrderPoints))]
    public void LowOrderPeerKeysAreRefused(string point)
    {
        var priv = new byte[32];
        X25519.GeneratePrivateKey(priv);
        var shared = new byte[32];
        shared.AsSpan().Fill(0xAA);
        Assert.False(X25519.TryAgree(priv, Hex.Bytes(point), shared));
        Assert.All(shared, b => Assert.Equal(0, b));
    }

    [Fact]
    public void GeneratedKeysAreClampedAndDeriveLikeBouncyCastle()
    {
        for (int i = 0; i < 20; i++)
        {
            var priv = new byte[32];
            X25519.GeneratePrivateKey(priv);
            Assert.Equal(0, priv[0] & 7);
            Assert.Equal(0x40, priv[31] & 0xC0);

            var pub = new byte[32];
            X25519.DerivePublicKey(priv, pub);
            var expected = new byte[32];
            BcX25519.ScalarMultBase(priv, 0, expected, 0);
            Assert.Equal(Hex.Of(expected), Hex.Of(pub));
        }
    }

    [Fact]
    public void TwoGeneratedKeysAgree()
    {
        byte[] a = new byte[32], b = new byte[32], pa = new byte[32], pb = new byte[32];
        X25519.GeneratePrivateKey(a);
        X25519.GeneratePrivateKey(b);
        Assert.NotEqual(Hex.Of(a), Hex.Of(b));
        X25519.DerivePublicKey(a, pa);
        X25519.DerivePublicKey(b, pb);
        byte[] s1 = new byte[32], s2 = new byte[32], reference = new byte[32];
        Assert.True(X25519.TryAgree(a, pb, s1));
        Assert.True(X25519.TryAgree(b, pa, s2));
        Assert.Equal(Hex.Of(s1), Hex.Of(s2));
        BcX25519.ScalarMult(a, 0, pb, 0, reference, 0);
        Assert.Equal(Hex.Of(reference), Hex.Of(s1));
    }

    [Fact]
    public void WrongSizesThrow()
    {
        Assert.Throws<ArgumentException>(() => X25519.GeneratePrivateKey(new byte[31]));
        Assert.Throws<ArgumentException>(() => X25519.DerivePublicKey(new byte[32], new byte[33]));
        Assert.Throws<ArgumentException>(() => X25519.TryAgree(new byte[32], new byte[31], new byte[32]));
    }
}
