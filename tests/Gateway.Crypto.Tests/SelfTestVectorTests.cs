namespace Gateway.Crypto.Tests;

/// <summary>The shared known-answer checks (also run by `gateway demo`).</summary>
public class SelfTestVectorTests
{
    [Fact]
    public void Blake2sAbc() => Assert.True(CryptoSelfTest.CheckBlake2sAbc());

    [Fact]
    public void Blake2sRfc7693SelfTestGrandHash() =>
        Assert.Equal(CryptoSelfTest.Blake2sSelfTestGrandHash, Convert.ToHexStringLower(CryptoSelfTest.ComputeBlake2sSelfTestGrandHash()));

    [Fact]
    public void WireGuardGoKdf() => Assert.True(CryptoSelfTest.CheckKdf());

    [Fact]
    public void Rfc8439Aead() => Assert.True(CryptoSelfTest.CheckAead());

    [Fact]
    public void XChaChaDraftA31() => Assert.True(CryptoSelfTest.CheckXChaCha());

    [Fact]
    public void Rfc7748DiffieHellman() => Assert.True(CryptoSelfTest.CheckX25519());

    [Fact]
    public void RunReportsAllPassing()
    {
        var results = CryptoSelfTest.Run();
        Assert.Equal(7, results.Count);
        Assert.All(results, r => Assert.True(r.Passed, r.Name));
    }
}
