// Standard atomic weights (IUPAC 2016, as in ase.data.atomic_masses_iupac2016) of H..Rn, for the
// pair style's check that an atom type's mass matches the element it is mapped to.
#ifndef NNP_ELEMENTS_H
#define NNP_ELEMENTS_H

#include <string>

namespace nnp {

// Standard atomic weight of `symbol` in g/mol, or 0 when the symbol is not in the table.
inline double standard_atomic_weight(const std::string &symbol) {
  struct Element {
    const char *symbol;
    double weight;
  };
  static const Element table[] = {
    {"H", 1.0080}, {"He", 4.0026}, {"Li", 6.9400}, {"Be", 9.0122}, {"B", 10.8100}, {"C", 12.0110},
    {"N", 14.0070}, {"O", 15.9990}, {"F", 18.9984}, {"Ne", 20.1797}, {"Na", 22.9898}, {"Mg", 24.3050},
    {"Al", 26.9815}, {"Si", 28.0850}, {"P", 30.9738}, {"S", 32.0600}, {"Cl", 35.4500}, {"Ar", 39.9480},
    {"K", 39.0983}, {"Ca", 40.0780}, {"Sc", 44.9559}, {"Ti", 47.8670}, {"V", 50.9415}, {"Cr", 51.9961},
    {"Mn", 54.9380}, {"Fe", 55.8450}, {"Co", 58.9332}, {"Ni", 58.6934}, {"Cu", 63.5460}, {"Zn", 65.3800},
    {"Ga", 69.7230}, {"Ge", 72.6300}, {"As", 74.9216}, {"Se", 78.9710}, {"Br", 79.9040}, {"Kr", 83.7980},
    {"Rb", 85.4678}, {"Sr", 87.6200}, {"Y", 88.9058}, {"Zr", 91.2240}, {"Nb", 92.9064}, {"Mo", 95.9500},
    {"Tc", 97.9072}, {"Ru", 101.0700}, {"Rh", 102.9055}, {"Pd", 106.4200}, {"Ag", 107.8682},
    {"Cd", 112.4140}, {"In", 114.8180}, {"Sn", 118.7100}, {"Sb", 121.7600}, {"Te", 127.6000},
    {"I", 126.9045}, {"Xe", 131.2930}, {"Cs", 132.9055}, {"Ba", 137.3270}, {"La", 138.9055},
    {"Ce", 140.1160}, {"Pr", 140.9077}, {"Nd", 144.2420}, {"Pm", 144.9128}, {"Sm", 150.3600},
    {"Eu", 151.9640}, {"Gd", 157.2500}, {"Tb", 158.9254}, {"Dy", 162.5000}, {"Ho", 164.9303},
    {"Er", 167.2590}, {"Tm", 168.9342}, {"Yb", 173.0540}, {"Lu", 174.9668}, {"Hf", 178.4900},
    {"Ta", 180.9479}, {"W", 183.8400}, {"Re", 186.2070}, {"Os", 190.2300}, {"Ir", 192.2170},
    {"Pt", 195.0840}, {"Au", 196.9666}, {"Hg", 200.5920}, {"Tl", 204.3800}, {"Pb", 207.2000},
    {"Bi", 208.9804}, {"Po", 208.9824}, {"At", 209.9872}, {"Rn", 222.0176}
  };
  for (const Element &e : table)
    if (symbol == e.symbol) return e.weight;
  return 0.0;
}

}  // namespace nnp

#endif
