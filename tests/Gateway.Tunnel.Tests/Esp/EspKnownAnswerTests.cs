using Gateway.Tunnel.Esp;

namespace Gateway.Tunnel.Tests.Esp;

/// <summary>
/// Whole ESP packets from the GCM-ESP test cases of draft-mcgrew-gcm-test-01
/// (fixtures/crypto/gcm-esp-vectors.txt): the SA opens each published packet (SPI, low sequence
/// bits, IV, ciphertext, ICV) to the published payload, inferring the ESN high bits, and seals
/// the payload back to the same bytes. Case 4 uses SPI 0, which RFC 4303 reserves; the AEAD tests
/// in Gateway.Crypto.Tests cover it.
/// </summary>
public class EspKnownAnswerTests
{
    internal sealed record Case(byte[] KeyAndSalt, uint Spi, ulong Sequence, bool Esn, byte[] Iv, byte[] Plaintext, byte[] Packet);

    internal static IReadOnlyList<Case> Load()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "crypto", "gcm-esp-vectors.txt");
        var list = new List<Case>();
        foreach (string line in File.ReadLines(path))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            string[] f = line.Split(' ');
            byte[] keyAndSalt = Convert.FromHexString(f[0] + f[1]);
            uint spi = Convert.ToUInt32(f[2], 16);
            ulong seq = Convert.ToUInt64(f[3], 16);
            bool esn = f[3].Length == 16;
            byte[] iv = Convert.FromHexString(f[4]);
            byte[] packet = Convert.FromHexString(f[2] + f[3][^8..] + f[4] + f[6] + f[7]);
            list.Add(new Case(keyAndSalt, spi, seq, esn, iv, Convert.FromHexString(f[5]), packet));
        }
        return list;
    }

    public static TheoryData<int> Cases()
    {
        var data = new TheoryData<int>();
        var all = Load();
        for (int i = 0; i < all.Count; i++)
            if (all[i].Spi != 0) data.Add(i);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OpensThePublishedPacket(int index)
    {
        var c = Load()[index];
        using var sa = new EspSecurityAssociation(c.Spi, c.KeyAndSalt, 128, c.Esn);
        sa.SetReceiveTop(c.Sequence - 1); // the receiver has seen the packets before this one
        byte[] packet = (byte[])c.Packet.Clone();
        var r = sa.Open(packet);
        Assert.Equal(EspStatus.Ok, r.Status);
        Assert.Equal(c.Sequence, r.Sequence);
        int pad = c.Plaintext[^2];
        Assert.Equal(c.Plaintext.Length - 2 - pad, r.Length);
        Assert.Equal(c.Plaintext[^1], r.NextHeader);
        Assert.Equal(Convert.ToHexString(c.Plaintext.AsSpan(0, r.Length)), Convert.ToHexString(packet.AsSpan(r.Offset, r.Length)));
        // The same packet again is a replay.
        Assert.Equal(EspStatus.Replay, sa.Open((byte[])c.Packet.Clone()).Status);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void SealsToThePublishedPacket(int index)
    {
        var c = Load()[index];
        using var sa = new EspSecurityAssociation(c.Spi, c.KeyAndSalt, 128, c.Esn);
        int pad = c.Plaintext[^2];
        int inner = c.Plaintext.Length - 2 - pad;
        var packet = new byte[c.Packet.Length];
        c.Plaintext.AsSpan(0, inner).CopyTo(packet.AsSpan(EspSecurityAssociation.Headroom));
        Assert.True(sa.SealForTest(packet, c.Sequence, inner, c.Plaintext[^1], c.Iv, pad));
        Assert.Equal(Convert.ToHexString(c.Packet), Convert.ToHexString(packet));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TwelveByteIcvPacketOpens(int index)
    {
        var c = Load()[index];
        using var sa = new EspSecurityAssociation(c.Spi, c.KeyAndSalt, 96, c.Esn);
        sa.SetReceiveTop(c.Sequence - 1);
        byte[] packet = c.Packet.AsSpan(0, c.Packet.Length - 4).ToArray(); // ICV truncated to 96 bits
        Assert.Equal(EspStatus.Ok, sa.Open(packet).Status);
    }

    [Fact]
    public void WrongHighBitsFailAuthentication()
    {
        // Case 1 carries ESN 0x87654321_00000000. A receiver whose window sits in an older
        // subspace infers other high bits; the AAD then differs and the ICV fails.
        var c = Load()[0];
        using var sa = new EspSecurityAssociation(c.Spi, c.KeyAndSalt, 128, c.Esn);
        sa.SetReceiveTop(0x1_0000_0000);
        Assert.Equal(EspStatus.AuthenticationFailed, sa.Open((byte[])c.Packet.Clone()).Status);
    }
}
