namespace Gateway.Crypto.Tests;

internal static class Hex
{
    public static byte[] Bytes(string hex) => Convert.FromHexString(hex);
    public static string Of(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    /// <summary>00 01 02 .. (length-1) mod 256, the BLAKE2 KAT input pattern.</summary>
    public static byte[] Sequence(int length)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++)
        {
            b[i] = (byte)i;
        }
        return b;
    }
}
