using Org.BouncyCastle.Crypto.Digests;
using Org.BouncyCastle.Crypto.Macs;
using Org.BouncyCastle.Crypto.Parameters;

namespace Gateway.Crypto.Tests;

public class WireGuardKdfTests
{
    /// <summary>wireguard-go device/kdf_test.go (its t0, t1, t2 are our T1, T2, T3).</summary>
    [Theory]
    [InlineData("746573742d6b6579", "746573742d696e707574",
        "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
        "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
        "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24")]
    [InlineData("776972656775617264", "776972656775617264",
        "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
        "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
        "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160")]
    [InlineData("", "",
        "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
        "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
        "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e")]
    public void WireGuardGoVectors(string key, string input, string t1, string t2, string t3)
    {
        byte[] k = Hex.Bytes(key), i = Hex.Bytes(input);
        byte[] a = new byte[32], b = new byte[32], c = new byte[32];

        WireGuardKdf.Kdf3(k, i, a, b, c);
        Assert.Equal(t1, Hex.Of(a));
        Assert.Equal(t2, Hex.Of(b));
        Assert.Equal(t3, Hex.Of(c));

        Array.Clear(a); Array.Clear(b);
        WireGuardKdf.Kdf2(k, i, a, b);
        Assert.Equal(t1, Hex.Of(a));
        Assert.Equal(t2, Hex.Of(b));

        Array.Clear(a);
        WireGuardKdf.Kdf1(k, i, a);
        Assert.Equal(t1, Hex.Of(a));
    }

    [Fact]
    public void OutputsMayAliasChainingKey()
    {
        // The handshake does (C, k) = KDF2(C, input) with C updated in place.
        byte[] ck = Hex.Bytes("6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633");
        byte[] input = Hex.Sequence(32);
        byte[] e1 = new byte[32], e2 = new byte[32], e3 = new byte[32];
        WireGuardKdf.Kdf3(ck, input, e1, e2, e3);

        byte[] c = (byte[])ck.Clone(), k2 = new byte[32], k3 = new byte[32];
        WireGuardKdf.Kdf3(c, input, c, k2, k3);
        Assert.Equal(Hex.Of(e1), Hex.Of(c));
        Assert.Equal(Hex.Of(e2), Hex.Of(k2));
        Assert.Equal(Hex.Of(e3), Hex.Of(k3));

        byte[] h = (byte[])ck.Clone();
        WireGuardKdf.Hmac(h, h, h);
        var expected = new byte[32];
        WireGuardKdf.Hmac(ck, ck, expected);
        Assert.Equal(Hex.Of(expected), Hex.Of(h));
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(32, 100)]
    [InlineData(64, 64)]
    [InlineData(65, 3)]   // longer than the block: RFC 2104 hashes the key first
    [InlineData(200, 1000)]
    public void HmacMatchesBouncyCastleHmacBlake2s(int keyLength, int dataLength)
    {
        byte[] key = Hex.Sequence(keyLength), data = Hex.Sequence(dataLength);
        var mac = new HMac(new Blake2sDigest(256));
        mac.Init(new KeyParameter(key));
        mac.BlockUpdate(data, 0, data.Length);
        var expected = new byte[32];
        mac.DoFinal(expected, 0);

        var actual = new byte[32];
        WireGuardKdf.Hmac(key, data, actual);
        Assert.Equal(Hex.Of(expected), Hex.Of(actual));
    }

    [Fact]
    public void WrongOutputLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => WireGuardKdf.Hmac([1], [2], new byte[16]));
        Assert.Throws<ArgumentException>(() => WireGuardKdf.Kdf1([1], [2], new byte[31]));
        Assert.Throws<ArgumentException>(() => WireGuardKdf.Kdf2([1], [2], new byte[32], new byte[33]));
        Assert.Throws<ArgumentException>(() => WireGuardKdf.Kdf3([1], [2], new byte[32], new byte[32], new byte[0]));
    }
}
