using System.Numerics;

namespace Gateway.Policy;

/// <summary>
/// Kubernetes' resource quantity (k8s.io/apimachinery resource.Quantity), read the way
/// <c>ParseQuantity</c> reads it and turned into an integer the way <c>Value()</c> does (rounded up),
/// so that an annotation means here what it means to the kubelet and to Cilium:
/// <code>
/// quantity        ::= signedNumber suffix
/// signedNumber    ::= number | ("+" | "-") number
/// number          ::= digits | digits "." digits | digits "." | "." digits
/// suffix          ::= binarySI | decimalExponent | decimalSI
/// binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
/// decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
/// decimalExponent ::= ("e" | "E") signedInteger
/// </code>
/// No white space anywhere; "K" (upper case) is not a suffix; "1e" is not a quantity.
/// </summary>
public static class ResourceQuantity
{
    /// <summary>
    /// Parses <paramref name="text"/> and returns its value rounded up to an integer (as
    /// <c>Quantity.Value()</c>, which rounds away from zero). False with a reason when the text is
    /// not a quantity or its value does not fit 64 bits.
    /// </summary>
    public static bool TryParseValue(string? text, out long value, out string? problem)
    {
        value = 0;
        if (!TryParse(text, out var mantissa, out int exponent10, out int exponent2, out problem))
        {
            return false;
        }
        BigInteger scaled = mantissa << exponent2;
        if (exponent10 >= 0)
        {
            scaled *= BigInteger.Pow(10, exponent10);
        }
        else
        {
            var divisor = BigInteger.Pow(10, -exponent10);
            var quotient = BigInteger.DivRem(scaled, divisor, out var remainder);
            // Value() rounds away from zero.
            scaled = remainder.IsZero ? quotient : quotient + remainder.Sign;
        }
        if (scaled > long.MaxValue || scaled < long.MinValue)
        {
            problem = "the value does not fit in 64 bits";
            return false;
        }
        value = (long)scaled;
        return true;
    }

    /// <summary>Splits a quantity into an integer mantissa and powers of 10 and 2 (value = m × 10^e10 × 2^e2).</summary>
    private static bool TryParse(string? text, out BigInteger mantissa, out int exponent10, out int exponent2, out string? problem)
    {
        mantissa = BigInteger.Zero;
        exponent10 = 0;
        exponent2 = 0;
        problem = null;
        if (string.IsNullOrEmpty(text))
        {
            problem = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTPE]*[-+]?[0-9]*)$' (empty)";
            return false;
        }
        int i = 0;
        bool negative = false;
        if (text[0] is '+' or '-')
        {
            negative = text[0] == '-';
            i++;
        }
        int digits = 0, fraction = 0;
        bool point = false;
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (c is >= '0' and <= '9')
            {
                mantissa = mantissa * 10 + (c - '0');
                digits++;
                if (point)
                {
                    fraction++;
                }
            }
            else if (c == '.' && !point)
            {
                point = true;
            }
            else
            {
                break;
            }
        }
        if (digits == 0)
        {
            problem = $"'{text}' has no number in front of its suffix";
            return false;
        }
        if (digits > 256)
        {
            problem = $"'{text}' has too many digits";
            return false;
        }
        string suffix = text[i..];
        exponent10 = -fraction;
        switch (suffix)
        {
            case "": break;
            case "n": exponent10 -= 9; break;
            case "u": exponent10 -= 6; break;
            case "m": exponent10 -= 3; break;
            case "k": exponent10 += 3; break;
            case "M": exponent10 += 6; break;
            case "G": exponent10 += 9; break;
            case "T": exponent10 += 12; break;
            case "P": exponent10 += 15; break;
            case "E": exponent10 += 18; break;
            case "Ki": exponent2 = 10; break;
            case "Mi": exponent2 = 20; break;
            case "Gi": exponent2 = 30; break;
            case "Ti": exponent2 = 40; break;
            case "Pi": exponent2 = 50; break;
            case "Ei": exponent2 = 60; break;
            default:
                if (suffix.Length > 1 && suffix[0] is 'e' or 'E' && IsSignedInteger(suffix.AsSpan(1)) &&
                    int.TryParse(suffix.AsSpan(1), System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out int e) &&
                    e is >= -1000 and <= 1000)
                {
                    exponent10 += e;
                    break;
                }
                problem = $"'{suffix}' is not a quantity suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>)";
                return false;
        }
        if (negative)
        {
            mantissa = -mantissa;
        }
        return true;
    }

    private static bool IsSignedInteger(ReadOnlySpan<char> s)
    {
        if (s.Length > 0 && s[0] is '+' or '-')
        {
            s = s[1..];
        }
        if (s.Length == 0)
        {
            return false;
        }
        foreach (char c in s)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }
        return true;
    }
}
